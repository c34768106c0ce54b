// The Lua scripts the shared limits run in Redis. Each runs atomically, so two instances admitting
// the same client at once can't both take its last token or its last slot. Time is Redis's own
// (TIME), so instances with skewed clocks still share one bucket and one lease expiry.
//
// Keys, per client key K (an IPv4 address or an IPv6 network) under --redis-prefix P; the {K}
// hash tag keeps both in one Redis Cluster slot:
//   P{K}:rate   a hash: tokens (a float), at (ms): the token bucket. It expires once it would
//               have refilled, when it is the same as no key.
//   P{K}:conns  a sorted set of leases `<instanceId>:<leaseId>`, each scored by its expiry (ms).
//               The key expires a lease lifetime after its last add or refresh.

/**
 * acquire: KEYS = rate, conns; ARGV = rate per s, burst, cap, lease member, lease ms.
 * Returns 0 (admitted: one token spent, the lease added), 1 (rate-limited) or 2 (ip-limit).
 * Expired leases go first; the cap is checked before the bucket, as the local ClientTable does,
 * so that a client at its cap doesn't burn tokens.
 */
export const ACQUIRE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= cap then return 2 end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  at = now
end
if tokens < 1 then return 1 end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
redis.call('ZADD', KEYS[2], now + leaseMs, ARGV[4])
redis.call('PEXPIRE', KEYS[2], leaseMs + 1000)
return 0
`;

/**
 * refresh: KEYS = conns; ARGV = lease ms, then the members this instance holds for that client.
 * Sets each one's expiry a lease lifetime from now, adding those Redis lost (a restart without
 * persistence), so the shared count comes back to the connections that are really open.
 */
export const REFRESH_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local leaseMs = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + leaseMs, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], leaseMs + 1000)
return #ARGV - 1
`;
