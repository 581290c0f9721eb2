/**
 * How the Redis store routes an `any` message: the cluster's counterpart of
 * src/broker/any-strategies.ts, as Lua scripts, so that the pick and the claim are one atomic
 * step. Apart from the store's other scripts (scripts.ts: the keys, and the helpers every script
 * starts with) because they decide which of a group's members gets a message, not what becomes
 * of a stored one.
 *
 * As on one process, an `any` goes only to a member whose user's window has room for it
 * (delivery.max_inflight_per_user, _bytes_per_user; window-scripts.ts ROOM: the `any` messages
 * a user holds count too, and one message always goes to a user with nothing in flight). When
 * no member has room, the message waits (in P qw:GROUP), new ones wait behind it, and each member
 * is marked (P wg:USER holds the group): the ack, dead letter or sweep that frees a member's
 * window makes its node run PUMP_GROUP, which routes the group's waiting messages in queue order
 * while some member has room.
 */
import { PRELUDE } from './scripts.js';
import { ROOM } from './window-scripts.js';

/** PRELUDE, ROOM and the helpers of the `any` scripts: the live members, the pick, the marks. */
const ANY = `${PRELUDE}${ROOM}
-- The group's member connections on the live nodes, sorted by node and connection.
local function liveMembers(group, since)
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
  table.sort(members, function(a, b) return a.key < b.key end)
  return members
end
-- What a member's user holds: {in flight with the \`any\` it holds, their bytes, the \`any\` it
-- holds (least_connections)}, read once per script into \`room\` and kept there as it claims.
local function holds(room, user)
  local r = room[user]
  if not r then
    local n, b = inflight(user)
    r = {n, b, tonumber(redis.call('HGET', P..'load', user) or '0')}
    room[user] = r
  end
  return r
end
-- The member that gets a message of \`size\` bytes by \`strategy\`, among those whose user's window
-- has room for it (all of them without winCount: a node of an older version's call); nil when
-- none has. The rotation (P rr:GROUP) turns only when some member is picked.
local function pickMember(members, group, strategy, size, room, winCount, winBytes)
  local eligible = {}
  for _, member in ipairs(members) do
    local r = holds(room, member.user)
    if not winCount or fits(r[1], r[2], size, winCount, winBytes) then eligible[#eligible + 1] = member end
  end
  if #eligible == 0 then return nil end
  local turn = redis.call('INCR', P..'rr:'..group)
  if strategy == 'least_connections' then
    local best, ties = nil, {}
    for _, member in ipairs(eligible) do
      local load = room[member.user][3]
      if best == nil or load < best then best, ties = load, {member} elseif load == best then ties[#ties + 1] = member end
    end
    return ties[(turn % #ties) + 1]
  elseif strategy == 'weighted' then
    -- Members without room sit this round out: the others share it by their weights.
    local total = 0
    for _, member in ipairs(eligible) do total = total + member.weight end
    local at = turn % total
    for _, member in ipairs(eligible) do
      at = at - member.weight
      if at < 0 then return member end
    end
    return eligible[#eligible]
  end
  return eligible[(turn % #eligible) + 1]
end
-- A message of \`user\` was claimed: what it holds grows by it.
local function took(room, user, size)
  local r = room[user]
  r[1], r[2], r[3] = r[1] + 1, r[2] + size, r[3] + 1
end
-- No member had room: each member's freed window pumps the group (PUMP_GROUP).
local function blocked(group, members)
  for _, member in ipairs(members) do redis.call('SADD', P..'wg:'..member.user, group) end
end
`;

/**
 * An \`any\` message to one member connection of its group, picked across every live node by
 * the strategy (the message's own, else the group's, set with setGroupLoadBalanceStrategy, else
 * ARGV's: the config's for that group) among the members whose user's window has room for it.
 * ARGV: P id group now ackMs mult maxBackoffMs aliveSince defaultStrategy [winCount winBytes]
 * (without the window, from a node of an older version: any member, as before)
 * -> false (no member online, or none with room: it stays waiting, the members marked) |
 *    'pump' (older messages of the group wait: the node runs PUMP_GROUP, which routes them in
 *    queue order, this one among them) | {node, sid, user, fields}
 */
export const ROUTE_ANY = `${ANY}
local id, group, now, since = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[8])
local winCount, winBytes = tonumber(ARGV[10] or ''), tonumber(ARGV[11] or '')
local m = P..'m:'..id
local f = redis.call('HMGET', m, 'state', 'strategy', 'bytes')
if f[1] ~= 'w' then
  -- Not waiting (a node of an older version claimed or removed it): out of the index too.
  redis.call('ZREM', P..'qw:'..group, id)
  return false
end
local members = liveMembers(group, since)
if #members == 0 then return false end
if winCount then
  local qw = P..'qw:'..group
  local score = redis.call('ZSCORE', qw, id)
  if not score then
    -- Left waiting unindexed (a node of an older version put it back): indexed now.
    score = redis.call('ZSCORE', P..'q:g:'..group, id)
    if score then redis.call('ZADD', qw, score, id) end
  end
  -- Older messages wait for room: they go first.
  if score and #redis.call('ZRANGEBYSCORE', qw, '-inf', '('..score, 'LIMIT', 0, 1) > 0 then return 'pump' end
end
local strategy = f[2]
if not strategy or strategy == '' then strategy = redis.call('HGET', P..'strategies', group) or ARGV[9] end
local pick = pickMember(members, group, strategy, tonumber(f[3] or '0'), {}, winCount, winBytes)
if not pick then
  blocked(group, members)
  return false
end
local fields = claim(id, pick.user, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if not fields then return false end
return {pick.node, pick.sid, pick.user, fields}
`;

/**
 * The group's waiting \`any\` messages (P qw:GROUP) routed in queue order while some member's
 * window has room for the next one (each by its strategy, among those members), stopping at the
 * first that fits nobody's: the members are then marked (P wg:USER) for their freed windows to
 * pump the group again. Run when a member joins, when ROUTE_ANY finds older messages waiting,
 * and when PUMP lists the group for a user whose window freed (\`user\`, whose mark is taken).
 * Entries whose message no longer waits (a node of an older version took it) leave the index.
 * ARGV: P group now ackMs mult maxBackoffMs aliveSince defaultStrategy winCount winBytes user('' : none) maxClaims
 * -> {{node, sid, user, fields}...} in queue order; maxClaims of them: more may fit (the node runs
 *    it again, so that one script never holds Redis for a whole backlog: a group's queue may hold
 *    delivery.max_pending_per_user messages)
 */
export const PUMP_GROUP = `${ANY}
local group, now, since = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[7])
local ackMs, mult, maxMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local winCount, winBytes, freed = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] or ''
local maxClaims = tonumber(ARGV[12] or '') or 500
if freed ~= '' then redis.call('SREM', P..'wg:'..freed, group) end
local out = {}
local members = liveMembers(group, since)
if #members == 0 then return out end
-- Marked again below if the group is still short of room.
for _, member in ipairs(members) do redis.call('SREM', P..'wg:'..member.user, group) end
local qw = P..'qw:'..group
local groupStrategy = redis.call('HGET', P..'strategies', group) or ARGV[8]
local room = {}
while true do
  -- Every entry read is claimed or dropped from the index, unless the pump stops: read from the head.
  local ids = redis.call('ZRANGE', qw, 0, 99)
  if #ids == 0 then return out end
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', P..'m:'..id, 'state', 'strategy', 'bytes')
    if f[1] ~= 'w' then
      redis.call('ZREM', qw, id)
    else
      local strategy = f[2]
      if not strategy or strategy == '' then strategy = groupStrategy end
      local size = tonumber(f[3] or '0')
      local pick = pickMember(members, group, strategy, size, room, winCount, winBytes)
      if not pick then
        blocked(group, members)
        return out
      end
      local fields = claim(id, pick.user, now, ackMs, mult, maxMs)
      redis.call('ZREM', qw, id) -- claim() did, for a message of this group: so that the loop ends whatever it holds
      took(room, pick.user, size)
      out[#out + 1] = {pick.node, pick.sid, pick.user, fields}
      if #out >= maxClaims then return out end
    end
  end
end
`;
