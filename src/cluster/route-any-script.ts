/**
 * How the Redis store routes an `any` message: the cluster's counterpart of
 * src/broker/any-strategies.ts, as Lua scripts, so that the pick and the claim are one atomic
 * step. Apart from the store's other scripts (scripts.ts: the keys, and the helpers every script
 * starts with) because they decide which of a group's members gets a message, not what becomes
 * of a stored one.
 *
 * As on one process, an `any` goes only to a member whose user's window has room for it
 * (delivery.max_inflight_per_user, _bytes_per_user; window-scripts.ts ROOM: the `any` messages
 * a user holds count too, and one message always goes to a user with nothing in flight). The
 * pick visits the members in the group's index (any-index-scripts.ts: those that may have room,
 * in rotation order, from after the last one picked), so it reads a few members, not the group.
 * When no member has room, the message waits (in P qw:GROUP), new ones wait behind it, and each
 * member visited without room left the index marked (P wg:USER holds the group): the ack, dead
 * letter or sweep that frees its window makes its node run PUMP_MARKED, which puts it back in
 * its groups, in turn, and routes each one's waiting messages in queue order while some member
 * has room, until the window is full again.
 */
import { LEAST_CONNECTIONS_SAMPLE } from '../broker/any-strategies.js';
import { FULL_SCAN_MS, MEMBER_INDEX } from './any-index-scripts.js';
import { PRELUDE } from './scripts.js';
import { ROOM } from './window-scripts.js';

/** PRELUDE, ROOM, the members index and the helpers of the \`any\` scripts: the walk and the pick. */
const ANY = `${PRELUDE}${ROOM}${MEMBER_INDEX}
-- Set by each script: the user's window (nil: a node of an older version's call, no window), and
-- the oldest heartbeat of a live node.
local winCount, winBytes, aliveSince
-- Per script: whether each node beats, and what each user holds.
local beats = {}
local function live(node)
  local b = beats[node]
  if b == nil then
    b = alive(node, aliveSince) and true or false
    beats[node] = b
  end
  return b
end
-- What a member's user holds: {in flight with the \`any\` it holds, their bytes, the \`any\` it
-- holds (least_connections)}, read once per script into \`room\` and kept there as it claims.
local function holds(room, user)
  local r = room[user]
  if not r then
    local n, b, held = inflight(user)
    r = {n, b, held}
    room[user] = r
  end
  return r
end
-- A member's index name "user\\nnode\\nsid" as {name, user, field ("node\\nsid", P pg:'s), node, sid}.
local function parse(name)
  local a = string.find(name, '\\n', 1, true)
  local field = string.sub(name, a + 1)
  local b = string.find(field, '\\n', 1, true)
  return {name = name, user = string.sub(name, 1, a - 1), field = field, node = string.sub(field, 1, b - 1), sid = string.sub(field, b + 1)}
end
local function hasRoom(room, member, size)
  if not winCount then return true end
  local r = holds(room, member.user)
  return fits(r[1], r[2], size, winCount, winBytes)
end
-- The members in P pa:GROUP that can take a message of \`size\` bytes, in rotation order from
-- after \`after\` ('': from the first) round to it, each given to \`take\` until it returns true.
-- A member without room leaves P pa: with its user's other connections (close); one of a node
-- that does not beat is passed over.
local function visit(group, after, size, room, take)
  local pa = P..'pa:'..group
  local passes = after == '' and {{'-', '+'}} or {{'('..after, '+'}, {'-', '['..after}}
  for _, pass in ipairs(passes) do
    local from, names = pass[1], nil
    repeat
      names = redis.call('ZRANGEBYLEX', pa, from, pass[2], 'LIMIT', 0, 32)
      for _, name in ipairs(names) do
        local member = parse(name)
        if live(member.node) then
          if hasRoom(room, member, size) then
            if take(member) then return end
          else
            close(member.user, group)
          end
        end
      end
      if #names > 0 then from = '('..names[#names] end
    until #names < 32
  end
end
-- The member that gets a message of \`size\` bytes by \`strategy\`, among those with room; nil when
-- none has. round_robin: the next one after the last picked (P rc:GROUP k); weighted: the same
-- one again while it has had fewer than its weight in a row (P rc:GROUP n), else the next;
-- least_connections: the one whose user holds the fewest \`any\` among the next
-- LEAST_CONNECTIONS_SAMPLE (16) with room (all of them in a smaller group), the first on a tie.
local function pickMember(group, strategy, size, room)
  local rc = P..'rc:'..group
  local last = redis.call('HMGET', rc, 'k', 'n')
  local after, run, pick = last[1] or '', tonumber(last[2] or '0'), nil
  if strategy == 'weighted' and after ~= '' and redis.call('ZSCORE', P..'pa:'..group, after) then
    local member = parse(after)
    local value = redis.call('HGET', P..'pg:'..group, member.field) or ''
    local weight = tonumber(string.sub(value, (string.find(value, '\\n', 1, true) or #value) + 1)) or 1
    if run < weight and live(member.node) and hasRoom(room, member, size) then pick, run = member, run + 1 end
  end
  if not pick then
    run = 1
    if strategy == 'least_connections' then
      local seen = 0
      visit(group, after, size, room, function(member)
        if not pick or holds(room, member.user)[3] < holds(room, pick.user)[3] then pick = member end
        seen = seen + 1
        return seen >= ${LEAST_CONNECTIONS_SAMPLE}
      end)
    else
      visit(group, after, size, room, function(member)
        pick = member
        return true
      end)
    end
  end
  if pick then redis.call('HSET', rc, 'k', pick.name, 'n', run) end
  return pick
end
-- pickMember; when it finds nobody, every member is put back in P pa: and visited again, at most
-- once per FULL_SCAN_MS per group: what a missed event left out gets its turn.
local function pickAny(group, strategy, size, room, now)
  local pick = pickMember(group, strategy, size, room)
  if pick or not winCount then return pick end
  local rc = P..'rc:'..group
  if now - tonumber(redis.call('HGET', rc, 'f') or '0') < ${FULL_SCAN_MS} then return nil end
  redis.call('HSET', rc, 'f', now)
  redis.call('ZUNIONSTORE', P..'pa:'..group, 1, P..'pm:'..group)
  return pickMember(group, strategy, size, room)
end
-- A message of \`user\` was claimed: what it holds grows by it.
local function took(room, user, size)
  local r = holds(room, user)
  r[1], r[2], r[3] = r[1] + 1, r[2] + size, r[3] + 1
end
-- The group's waiting messages (P qw:GROUP) claimed in queue order into \`out\` (as
-- {node, sid, user, fields}) while some member has room, by each one's strategy (else the
-- group's set at run time, else \`strategy\`): false when \`out\` reached maxClaims, more may fit.
-- Entries whose message no longer waits (a node of an older version took it) leave the index.
local function pumpGroup(group, strategy, now, ackMs, mult, maxMs, room, out, maxClaims)
  local qw = P..'qw:'..group
  if redis.call('EXISTS', qw) == 0 or membersIndexed(group) == 0 then return true end
  local groupStrategy = redis.call('HGET', P..'strategies', group) or strategy
  while true do
    -- Every entry read is claimed or dropped from the index, unless the pump stops: read from the head.
    local ids = redis.call('ZRANGE', qw, 0, 99)
    if #ids == 0 then return true end
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', P..'m:'..id, 'state', 'strategy', 'bytes')
      if f[1] ~= 'w' then
        redis.call('ZREM', qw, id)
      else
        local size = tonumber(f[3] or '0')
        local pick = pickAny(group, (f[2] and f[2] ~= '') and f[2] or groupStrategy, size, room, now)
        if not pick then return true end
        local fields = claim(id, pick.user, now, ackMs, mult, maxMs)
        redis.call('ZREM', qw, id) -- claim() did, for a message of this group: so that the loop ends whatever it holds
        took(room, pick.user, size)
        out[#out + 1] = {pick.node, pick.sid, pick.user, fields}
        if #out >= maxClaims then return false end
      end
    end
  end
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
local id, group, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
aliveSince, winCount, winBytes = tonumber(ARGV[8]), tonumber(ARGV[10] or ''), tonumber(ARGV[11] or '')
local m = P..'m:'..id
local f = redis.call('HMGET', m, 'state', 'strategy', 'bytes')
if f[1] ~= 'w' then
  -- Not waiting (a node of an older version claimed or removed it): out of the index too.
  redis.call('ZREM', P..'qw:'..group, id)
  return false
end
if membersIndexed(group) == 0 then return false end
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
local pick = pickAny(group, strategy, tonumber(f[3] or '0'), {}, now)
if not pick then return false end
local fields = claim(id, pick.user, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if not fields then return false end
return {pick.node, pick.sid, pick.user, fields}
`;

/**
 * The group's waiting \`any\` messages (P qw:GROUP) routed in queue order while some member's
 * window has room for the next one (each by its strategy, among those members), stopping at the
 * first that fits nobody's: the members visited were then marked (P wg:USER) for their freed
 * windows to pump the group again (PUMP_MARKED). Run when a member joins, and when ROUTE_ANY
 * finds older messages waiting (\`user\`: '', or a node of an older version's freed user: its
 * mark is taken, its connections back in the index).
 * ARGV: P group now ackMs mult maxBackoffMs aliveSince defaultStrategy winCount winBytes user('' : none) maxClaims
 * -> {{node, sid, user, fields}...} in queue order; maxClaims of them: more may fit (the node runs
 *    it again, so that one script never holds Redis for a whole backlog: a group's queue may hold
 *    delivery.max_pending_per_user messages)
 */
export const PUMP_GROUP = `${ANY}
local group, now, freed = ARGV[2], tonumber(ARGV[3]), ARGV[11] or ''
aliveSince, winCount, winBytes = tonumber(ARGV[7]), tonumber(ARGV[9]), tonumber(ARGV[10])
if freed ~= '' then
  unmark(freed, group)
  reopen(freed, group)
end
local out = {}
pumpGroup(group, ARGV[8], now, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), {}, out, tonumber(ARGV[12] or '') or 500)
return out
`;

/**
 * Room came in \`user\`'s window (an ack, a dead letter, a sweep): the groups whose \`any\`
 * messages waited for it (P wg:USER) are offered it in their turn (P wt:USER), each one's mark
 * taken and the user back in its index, then pumped as PUMP_GROUP does, until the window is
 * full by count again. Then no other member of a group still marked has room either (room comes
 * only through freed windows, and each pumps its own user's groups), so offering them would
 * claim nothing and mark the user again: before, each ack of a user marked in 300 groups ran 300
 * PUMP_GROUPs. A group offered and marked again goes to the back, past \`upTo\`: a pass offers
 * each group once (a window with room left by bytes only may fit none of their messages).
 * ARGV: P user now ackMs mult maxBackoffMs aliveSince defaultStrategy winCount winBytes maxClaims
 *       maxGroups upTo('' : the pass starts) [group strategy]... (the config's group_strategies)
 * -> {{{node, sid, user, fields}...}, upTo}: upTo (not nil) when maxClaims were claimed or
 *    maxGroups offered: the node runs it again with it, for the rest of the pass
 */
export const PUMP_MARKED = `${ANY}
local user, now, upTo = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[13])
local ackMs, mult, maxMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
aliveSince, winCount, winBytes = tonumber(ARGV[7]), tonumber(ARGV[9]), tonumber(ARGV[10])
local maxClaims, maxGroups = tonumber(ARGV[11]), tonumber(ARGV[12])
local configured = {}
for i = 14, #ARGV - 1, 2 do configured[ARGV[i]] = ARGV[i + 1] end
local wt = P..'wt:'..user
turnsOfMarks(user)
if not upTo then upTo = tonumber(redis.call('ZRANGE', wt, -1, -1, 'WITHSCORES')[2] or '0') end
local out, room = {}, {}
for _ = 1, maxGroups do
  if holds(room, user)[1] >= winCount then return {out} end
  local group = redis.call('ZRANGEBYSCORE', wt, '-inf', upTo, 'LIMIT', 0, 1)[1]
  if not group then return {out} end
  unmark(user, group)
  reopen(user, group)
  if not pumpGroup(group, configured[group] or ARGV[8], now, ackMs, mult, maxMs, room, out, maxClaims) then return {out, upTo} end
end
return {out, upTo}
`;
