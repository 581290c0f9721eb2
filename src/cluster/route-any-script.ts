/**
 * How the Redis store routes an `any` message: the cluster's counterpart of
 * src/broker/any-strategies.ts, as one Lua script, so that the pick and the claim are one atomic
 * step. Apart from the store's other scripts (scripts.ts: the keys, and the helpers every script
 * starts with) because it decides which of a group's members gets a message, not what becomes
 * of a stored one.
 */
import { PRELUDE } from './scripts.js';

/**
 * An \`any\` message to one member connection of its group, picked across every live node by
 * the strategy: the message's own, else the group's (set with setGroupLoadBalanceStrategy),
 * else ARGV's (the config's for that group).
 * ARGV: P id group now ackMs mult maxBackoffMs aliveSince defaultStrategy
 * -> false (no member online: it stays waiting) | {node, sid, user, fields}
 */
export const ROUTE_ANY = `${PRELUDE}
local id, group, now, since = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[8])
local m = P..'m:'..id
if redis.call('HGET', m, 'state') ~= 'w' then
  -- Not waiting (a node of an older version claimed or removed it): out of the index too.
  redis.call('ZREM', P..'qw:'..group, id)
  return false
end
local strategy = redis.call('HGET', m, 'strategy')
if not strategy or strategy == '' then strategy = redis.call('HGET', P..'strategies', group) or ARGV[9] end
local raw = redis.call('HGETALL', P..'pg:'..group)
local members = {}
for i = 1, #raw, 2 do
  local nl = string.find(raw[i], '\\n', 1, true)
  local node = string.sub(raw[i], 1, nl - 1)
  if alive(node, since) then
    local vl = string.find(raw[i + 1], '\\n', 1, true)
    members[#members + 1] = {key = raw[i], node = node, sid = string.sub(raw[i], nl + 1),
      user = string.sub(raw[i + 1], 1, vl - 1), weight = tonumber(string.sub(raw[i + 1], vl + 1)) or 1}
  end
end
if #members == 0 then return false end
table.sort(members, function(a, b) return a.key < b.key end)
local turn = redis.call('INCR', P..'rr:'..group)
local pick
if strategy == 'least_connections' then
  local best, ties = nil, {}
  for _, member in ipairs(members) do
    local load = tonumber(redis.call('HGET', P..'load', member.user) or '0')
    if best == nil or load < best then best, ties = load, {member} elseif load == best then ties[#ties + 1] = member end
  end
  pick = ties[(turn % #ties) + 1]
elseif strategy == 'weighted' then
  local total = 0
  for _, member in ipairs(members) do total = total + member.weight end
  local at = turn % total
  for _, member in ipairs(members) do
    at = at - member.weight
    if at < 0 then pick = member break end
  end
  pick = pick or members[#members]
else
  pick = members[(turn % #members) + 1]
end
local fields = claim(id, pick.user, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if not fields then return false end
return {pick.node, pick.sid, pick.user, fields}
`;
