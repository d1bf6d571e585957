--[[
State machine of one circuit breaker, shared by every process through Redis.

Every change of a breaker's state happens in this script. Redis runs a script
atomically and the script reads the clock with TIME, so processes whose clocks
differ still agree on when a breaker opened and when trial calls may start.
Calling TIME before writing needs Redis 5 or later, where scripts replicate
their effects instead of their source.

KEYS[1]  hash: state, failures, retry_at, seq, generation, changed_at,
         half_open_successes, forced
KEYS[2]  sorted set of trial leases: member = lease token, score = deadline (ms)
KEYS[3]  hash of the failure-rate window: "<unix second>:s" and
         "<unix second>:f" hold the successes and failures of that second

ARGV  1 operation: allow, success, failure, release, status, force_open,
        force_close or reset
      2 breaker name    3 pub/sub channel
      4 failure threshold    5 recovery timeout (ms)    6 success threshold
      7 trial calls at once  8 trial lease (ms)
      9 failure rate that opens (0: off)    10 window (ms)    11 minimum calls
     12 successes to add to the window (counted locally by the caller)
     13 lease token: a new one for allow, the held one for success, failure
        and release, or ""

Returns {state, failures, retry_at, seq, generation, now, changed_at,
half_open_successes, trials, forced, verdict, old_state, reason,
next_lease_expiry}. Times are Redis milliseconds. old_state and reason are ""
unless this call changed the state, so exactly one caller learns of each
transition. Every change is also published on the channel.
]]

local state_key, trials_key, window_key = KEYS[1], KEYS[2], KEYS[3]
local operation, name, channel = ARGV[1], ARGV[2], ARGV[3]
local failure_threshold = tonumber(ARGV[4])
local recovery_ms = tonumber(ARGV[5])
local success_threshold = tonumber(ARGV[6])
local max_trials = tonumber(ARGV[7])
local lease_ms = tonumber(ARGV[8])
local failure_rate = tonumber(ARGV[9])
local window_ms = tonumber(ARGV[10])
local minimum_calls = tonumber(ARGV[11])
local new_successes = tonumber(ARGV[12])
local token = ARGV[13]

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function integer(value)
  return string.format('%d', value)
end

-- Load the breaker, or create it closed. The generation is the creation time
-- in microseconds, kept as a string so no digit is lost.
local stored = redis.call('HMGET', state_key, 'state', 'failures', 'retry_at',
  'seq', 'generation', 'changed_at', 'half_open_successes', 'forced')
local breaker
local dirty = false
local publish = false
if stored[1] then
  breaker = {
    state = stored[1],
    failures = tonumber(stored[2]),
    retry_at = tonumber(stored[3]),
    seq = tonumber(stored[4]),
    generation = stored[5],
    changed_at = tonumber(stored[6]),
    half_open_successes = tonumber(stored[7]),
    forced = stored[8] or '',
  }
else
  breaker = {
    state = 'closed', failures = 0, retry_at = 0, seq = 0,
    generation = clock[1] .. string.format('%06d', tonumber(clock[2])),
    changed_at = now, half_open_successes = 0, forced = '',
  }
  dirty = true
end

local verdict, old_state, reason = '', '', ''

-- A change every process must learn about: saved and published at the end.
local function changed()
  breaker.seq = breaker.seq + 1
  dirty = true
  publish = true
end

local function transition(new_state, cause)
  old_state = breaker.state
  reason = cause
  breaker.state = new_state
  breaker.changed_at = now
  breaker.half_open_successes = 0
  breaker.retry_at = 0
  redis.call('DEL', trials_key)
  if new_state == 'open' and breaker.forced == '' then
    breaker.retry_at = now + recovery_ms
  elseif new_state == 'closed' then
    breaker.failures = 0
    redis.call('DEL', window_key)
  elseif new_state == 'half_open' then
    breaker.failures = 0
  end
  changed()
end

local function lease_is_valid()
  if token == '' then
    return false
  end
  local deadline = redis.call('ZSCORE', trials_key, token)
  return deadline ~= false and tonumber(deadline) > now
end

local function drop_lease()
  if token ~= '' then
    redis.call('ZREM', trials_key, token)
  end
end

-- Failure-rate window: counters per second, kept for window_ms. The window
-- therefore spans window_ms rounded up to whole seconds.
local function add_to_window(successes, failures)
  if failure_rate <= 0 or (successes == 0 and failures == 0) then
    return
  end
  local second = integer(math.floor(now / 1000))
  if successes > 0 then
    redis.call('HINCRBY', window_key, second .. ':s', successes)
  end
  if failures > 0 then
    redis.call('HINCRBY', window_key, second .. ':f', failures)
  end
  redis.call('PEXPIRE', window_key, window_ms + 1000)
end

local function window_counts()
  local oldest = math.floor((now - window_ms) / 1000)
  local fields = redis.call('HGETALL', window_key)
  local calls, failures, expired = 0, 0, {}
  for i = 1, #fields, 2 do
    local second, kind = string.match(fields[i], '^(%d+):(%a)$')
    local count = tonumber(fields[i + 1])
    if second == nil or tonumber(second) <= oldest then
      expired[#expired + 1] = fields[i]
    else
      calls = calls + count
      if kind == 'f' then
        failures = failures + count
      end
    end
  end
  if #expired > 0 then
    redis.call('HDEL', window_key, unpack(expired))
  end
  return calls, failures
end

-- Reason to open a closed breaker after one more failure, or ''.
local function opening_reason()
  if breaker.failures >= failure_threshold then
    return 'failure_threshold'
  end
  if failure_rate > 0 then
    local calls, failures = window_counts()
    if calls >= minimum_calls and failures >= failure_rate * calls then
      return 'failure_rate'
    end
  end
  return ''
end

local function start_trials_when_due()
  if breaker.state == 'open' and breaker.forced == '' and now >= breaker.retry_at then
    transition('half_open', 'recovery_timeout')
  end
end

local function allow()
  if breaker.forced == 'open' then
    verdict = 'rejected'
    return
  end
  if breaker.forced == 'closed' or breaker.state == 'closed' then
    verdict = 'allowed'
    return
  end
  start_trials_when_due()
  if breaker.state ~= 'half_open' then
    verdict = 'rejected'
    return
  end
  redis.call('ZREMRANGEBYSCORE', trials_key, '-inf', now)
  if redis.call('ZCARD', trials_key) < max_trials then
    redis.call('ZADD', trials_key, now + lease_ms, token)
    verdict = 'trial'
  else
    verdict = 'rejected'
  end
end

local function success()
  if breaker.forced ~= '' then
    verdict = 'ignored'
  elseif breaker.state == 'closed' then
    add_to_window(new_successes, 0)
    if breaker.failures > 0 then
      breaker.failures = 0
      changed()
    end
    verdict = 'counted'
  elseif breaker.state == 'half_open' and lease_is_valid() then
    drop_lease()
    breaker.half_open_successes = breaker.half_open_successes + 1
    dirty = true
    if breaker.half_open_successes >= success_threshold then
      transition('closed', 'success_threshold')
    end
    verdict = 'counted'
  else
    drop_lease()
    verdict = 'stale'
  end
end

local function failure()
  if breaker.forced ~= '' then
    verdict = 'ignored'
  elseif breaker.state == 'closed' then
    add_to_window(new_successes, 1)
    breaker.failures = breaker.failures + 1
    local opening = opening_reason()
    if opening ~= '' then
      transition('open', opening)
    elseif breaker.failures == 1 then
      -- Other processes must now send their successes, which clear the count.
      changed()
    else
      dirty = true
    end
    verdict = 'counted'
  elseif breaker.state == 'half_open' and lease_is_valid() then
    breaker.failures = 1
    transition('open', 'trial_failed')
    verdict = 'counted'
  else
    drop_lease()
    verdict = 'stale'
  end
end

if operation == 'allow' then
  allow()
elseif operation == 'success' then
  success()
elseif operation == 'failure' then
  failure()
elseif operation == 'release' then
  drop_lease()
  verdict = 'released'
elseif operation == 'status' then
  if not stored[1] then
    -- Reading a breaker that was never used does not create it.
    dirty = false
  end
  if breaker.state == 'closed' and breaker.forced == '' then
    add_to_window(new_successes, 0)
  end
  start_trials_when_due()
  redis.call('ZREMRANGEBYSCORE', trials_key, '-inf', now)
elseif operation == 'force_open' then
  breaker.forced = 'open'
  transition('open', 'forced_open')
elseif operation == 'force_close' then
  breaker.forced = 'closed'
  transition('closed', 'forced_closed')
elseif operation == 'reset' then
  breaker.forced = ''
  transition('closed', 'reset')
else
  return redis.error_reply('unknown circuit breaker operation ' .. tostring(operation))
end

local trials = redis.call('ZCARD', trials_key)
local next_lease_expiry = 0
if trials > 0 then
  local first = redis.call('ZRANGE', trials_key, 0, 0, 'WITHSCORES')
  next_lease_expiry = tonumber(first[2])
end

if dirty then
  redis.call('HSET', state_key,
    'state', breaker.state,
    'failures', integer(breaker.failures),
    'retry_at', integer(breaker.retry_at),
    'seq', integer(breaker.seq),
    'generation', breaker.generation,
    'changed_at', integer(breaker.changed_at),
    'half_open_successes', integer(breaker.half_open_successes),
    'forced', breaker.forced)
end
if publish then
  redis.call('PUBLISH', channel, cjson.encode({
    name = name,
    state = breaker.state,
    failures = integer(breaker.failures),
    retry_at = integer(breaker.retry_at),
    seq = integer(breaker.seq),
    generation = breaker.generation,
    now = integer(now),
    changed_at = integer(breaker.changed_at),
    forced = breaker.forced,
  }))
end

return {
  breaker.state, breaker.failures, breaker.retry_at, breaker.seq,
  breaker.generation, now, breaker.changed_at, breaker.half_open_successes,
  trials, breaker.forced, verdict, old_state, reason, next_lease_expiry,
}
