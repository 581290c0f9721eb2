/**
 * The index an `any` picks its member from, in the Redis store, so that a pick reads the few
 * members it visits and not the whole group (before it, an `any` to a group of 2,000 members
 * cost Redis 11.3 ms: npm run bench:redis-cost). Per group:
 *
 *   P pm:GROUP   ZSET, every score 0: "user\nnode\nsid" of each member connection (P pg:GROUP's
 *                fields, user first): the rotation's order, and a user's connections side by side
 *   P pa:GROUP   ZSET, the same names: the members that may have room, those an `any` visits
 *   P rc:GROUP   HASH k: the member picked last (the rotation goes on after it), n: how many
 *                times in a row (weighted), f: when the last full scan ran (below)
 *   P wg:USER    SET of groups whose P pa: left the user out (no room for the message it was
 *                visited for): its freed window (an ack, a sweep, a dead letter) puts it back
 *   P wt:USER    ZSET, the same groups by their turn for its freed window (PUMP_MARKED): the
 *                one marked longest ago first; a group offered the window and marked again goes
 *                to the back (a node of an older version keeps P wg: alone: put right, below)
 *
 * A member whose user has no room for the message is taken out of P pa: when a pick visits it
 * (with the user's other connections), so each member costs a pick at most once per filling of
 * its window, and a saturated group costs a pick nothing. A member of a node that stopped
 * beating is passed over, not taken out (FORGET_NODE takes it out of both, within presence_ttl).
 * In case an event was missed (a node of an older version that clears marks, a node whose
 * heartbeat came back), a pick that finds nobody puts every member back and visits them all
 * again, at most once per FULL_SCAN_MS per group.
 *
 * The member writes (JOIN in scripts.ts, LEAVE and SYNC_GROUP in presence-scripts.ts, FORGET_NODE)
 * keep P pm: and P pa: beside P pg:; when their sizes differ (P pg: written by a node of an older
 * version) the index is built again from P pg:, once.
 */

/** The longest a group with waiting `any` messages and no member with room goes between two full scans. */
export const FULL_SCAN_MS = 2000;

/** Lua helpers of the members index (they need P). Names use \n: user ids, node ids and sids never hold one. */
export const MEMBER_INDEX = `
local function memberName(user, field) return user..'\\n'..field end
-- The range of one user's names: every name that starts with "user\\n" ('\\11' follows '\\n').
local function userRange(user) return '['..user..'\\n', '('..user..'\\11' end
local function indexMember(group, user, field)
  local name = memberName(user, field)
  redis.call('ZADD', P..'pm:'..group, 0, name)
  redis.call('ZADD', P..'pa:'..group, 0, name)
end
local function unindexMember(group, user, field)
  local name = memberName(user, field)
  redis.call('ZREM', P..'pm:'..group, name)
  redis.call('ZREM', P..'pa:'..group, name)
end
-- The user had no room: its connections leave the group's P pa:, until its window frees (reopen).
local function close(user, group)
  local from, to = userRange(user)
  redis.call('ZREMRANGEBYLEX', P..'pa:'..group, from, to)
  redis.call('SADD', P..'wg:'..user, group)
  local wt = P..'wt:'..user
  if not redis.call('ZSCORE', wt, group) then
    local last = redis.call('ZRANGE', wt, -1, -1, 'WITHSCORES')[2]
    redis.call('ZADD', wt, (tonumber(last) or 0) + 1, group)
  end
end
-- The user's mark for the group goes (its window freed, or its last connection left the group).
local function unmark(user, group)
  redis.call('SREM', P..'wg:'..user, group)
  redis.call('ZREM', P..'wt:'..user, group)
end
-- P wt:USER as P wg:USER's groups when their sizes differ (a node of an older version marked or
-- unmarked in P wg: alone, or marks from before P wt:): what it marked first, what it took out gone.
local function turnsOfMarks(user)
  local wg, wt = P..'wg:'..user, P..'wt:'..user
  if redis.call('SCARD', wg) == redis.call('ZCARD', wt) then return end
  for _, group in ipairs(redis.call('SMEMBERS', wg)) do redis.call('ZADD', wt, 'NX', 0, group) end
  for _, group in ipairs(redis.call('ZRANGE', wt, 0, -1)) do
    if redis.call('SISMEMBER', wg, group) == 0 then redis.call('ZREM', wt, group) end
  end
end
-- The user's window freed: its connections are back in the group's P pa:.
local function reopen(user, group)
  local from, to = userRange(user)
  local pa = P..'pa:'..group
  for _, name in ipairs(redis.call('ZRANGEBYLEX', P..'pm:'..group, from, to)) do redis.call('ZADD', pa, 0, name) end
end
-- How many member connections the group has; its index built again from P pg: when it does not
-- have as many (P pg: written by a node of an older version), every member back in P pa:.
local function membersIndexed(group)
  local pg, pm, pa = P..'pg:'..group, P..'pm:'..group, P..'pa:'..group
  local n = redis.call('HLEN', pg)
  if n == redis.call('ZCARD', pm) then return n end
  redis.call('DEL', pm, pa)
  local raw = redis.call('HGETALL', pg)
  for i = 1, #raw, 2 do
    local name = memberName(string.sub(raw[i + 1], 1, string.find(raw[i + 1], '\\n', 1, true) - 1), raw[i])
    redis.call('ZADD', pm, 0, name)
    redis.call('ZADD', pa, 0, name)
  end
  return n
end
`;
