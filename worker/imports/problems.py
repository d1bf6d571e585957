"""Problems found while importing: what was skipped or clamped, and where."""

from __future__ import annotations

from dataclasses import dataclass

from freesport.exchange.models import ImportProblem

# Element paths of the items, as an operator would look for them in the file.
PATHS = {
    "group": "Классификатор/Группы/Группа",
    "property": "Классификатор/Свойства/Свойство",
    "property_value": "Классификатор/Свойства/Свойство/ВариантыЗначений/Справочник",
    "price_type": "ТипыЦен/ТипЦены",
    "warehouse": "Склады/Склад",
    "unit": "Классификатор/ЕдиницыИзмерения/ЕдиницаИзмерения",
    "product": "Каталог/Товары/Товар",
    "picture": "Каталог/Товары/Товар/Картинка",
    "offer": "ПакетПредложений/Предложения/Предложение",
    "characteristic": "Предложение/ХарактеристикиТовара/ХарактеристикаТовара/Значение",
    "price": "Предложение/Цены/Цена",
    "stock": "Предложение/Остатки/Остаток/Склад",
    "quantity": "Предложение/Количество",
}
MESSAGE_LENGTH = 1000


@dataclass(slots=True)
class Problem:
    code: str
    element: str
    external_id: str
    line: int | None
    message: str
    action: str = ImportProblem.Action.SKIPPED

    @property
    def skipped(self) -> bool:
        return self.action == ImportProblem.Action.SKIPPED


def skipped(
    element: str, external_id: str, line: int | None, code: str, message: str
) -> Problem:
    return Problem(code, PATHS[element], external_id, line, message)


def clamped(
    element: str, external_id: str, line: int | None, code: str, message: str
) -> Problem:
    return Problem(
        code, PATHS[element], external_id, line, message, ImportProblem.Action.CLAMPED
    )


def save(session_id: int, file_name: str, problems: list[Problem]) -> None:
    ImportProblem.objects.bulk_create(
        [
            ImportProblem(
                session_id=session_id,
                file=file_name,
                line=problem.line,
                element=problem.element,
                external_id=problem.external_id[:200],
                code=problem.code,
                action=problem.action,
                message=problem.message[:MESSAGE_LENGTH],
            )
            for problem in problems
        ]
    )
