/**
 * The Lua scripts that add and remove a group's member connections in Redis (presence.ts, and
 * JOIN in scripts.ts), and tell every node with members of the group which users came and went.
 * A user is in a group while it has a member connection there on any node, so whether a change
 * is news (the user's first connection in the group, or its last) is decided here, atomically,
 * from one counter per group and user:
 *
 *   P pg:GROUP   HASH "node\nsid" -> "user\nweight": the group's member connections
 *   P pc:GROUP   HASH user -> how many fields of pg:GROUP are the user's (every node not yet
 *                forgotten, so a dead node's users leave when FORGET_NODE runs for it)
 *   P nk:NODE    SET of what the node wrote: the keys "P pu:USER" and "P pg:GROUP", and one entry
 *                "P pg:GROUP\nSID" per member connection with the mark "P nk\n" (LISTED), so that
 *                forgetting the node reads its own fields, not the group's (forget-node-script.ts).
 *                An older version lists the keys only; its FORGET_NODE finds no such key and passes.
 *
 * A counter moves only when a field is really added (HSET answered 1) or deleted (HDEL found
 * it), so a script run twice for one connection (a retry, a resync) counts it once. A user's
 * 0 -> 1 and 1 -> 0 go out in the same step, as one PUBLISH on the group's channel P g:GROUP
 * (the channel every node with members subscribes to for the group's pubs):
 *
 *   [0xff]["+user" or "-user", joined by "\n"]
 *
 * 0xff is never an origin length (node ids are far shorter; channels.ts), so the first byte
 * tells a presence record from a pub. Redis delivers one channel's messages in the order the
 * scripts ran, so every node sees one user's joins and leaves alternate, in the cluster's order.
 * Every script takes P as ARGV[1]. Each also keeps the members index an \`any\` picks from
 * (P pm:GROUP, pa:GROUP: any-index-scripts.ts).
 */
import { MEMBER_INDEX } from './any-index-scripts.js';

/** Lua helpers for the scripts that add or remove member connections (they need P). */
export const MEMBER_HELPERS = `${MEMBER_INDEX}
local function userof(value)
  return string.sub(value, 1, string.find(value, '\\n', 1, true) - 1)
end
-- The user's member connections in the group moved by delta: true when that is news (0 -> 1, 1 -> 0).
local function counted(group, user, delta)
  local key = P..'pc:'..group
  local n = redis.call('HINCRBY', key, user, delta)
  if n <= 0 then
    redis.call('HDEL', key, user)
    -- Its freed window has no connection of the group left to put back (any-index-scripts.ts).
    unmark(user, group)
  end
  if delta > 0 then return n == 1 end
  -- Below 0 only if the counter was lost (Redis lost data): nothing to tell, it is reset.
  return n == 0
end
-- The group has no member connection left on any node: its \`any\` rotation (P rc:GROUP, and
-- an older version's rr:GROUP) and index go too, or every group that ever had an \`any\` would keep keys.
local function emptied(group)
  if redis.call('EXISTS', P..'pg:'..group) == 0 then redis.call('DEL', P..'rr:'..group, P..'rc:'..group, P..'pm:'..group, P..'pa:'..group) end
end
-- The node's key list names each member connection it wrote (and says it does: LISTED), so that
-- forgetting the node reads its own fields only (FORGET_NODE). "P pg:GROUP" stays listed too, for
-- an older version's FORGET_NODE. No key has a "\\n" in its name.
local LISTED = P..'nk\\n'
local function listMember(node, group, sid)
  redis.call('SADD', P..'nk:'..node, P..'pg:'..group, P..'pg:'..group..'\\n'..sid, LISTED)
end
local function unlistMember(node, group, sid) redis.call('SREM', P..'nk:'..node, P..'pg:'..group..'\\n'..sid) end
-- One PUBLISH per group and step, however many users changed.
local function tell(group, changes)
  if #changes > 0 then redis.call('PUBLISH', P..'g:'..group, '\\255'..table.concat(changes, '\\n')) end
end
`;

/**
 * Connection \`sid\` of \`node\` left \`group\` (or closed); \`last\`: it was the group's last member
 * connection on the node, so the node's key list (nk:NODE) drops the group.
 * ARGV: P node sid group last(1|0)
 */
export const LEAVE = `
local P = ARGV[1]
${MEMBER_HELPERS}
local node, sid, group = ARGV[2], ARGV[3], ARGV[4]
local key = P..'pg:'..group
local field = node..'\\n'..sid
local value = redis.call('HGET', key, field)
if value then
  redis.call('HDEL', key, field)
  local user = userof(value)
  unindexMember(group, user, field)
  if counted(group, user, -1) then tell(group, {'-'..user}) end
  emptied(group)
end
unlistMember(node, group, sid)
if ARGV[5] == '1' then redis.call('SREM', P..'nk:'..node, key) end
return 1
`;

/**
 * After an outage, one chunk of \`node\`'s member connections of \`group\`: those given with a
 * user are set (added where missing), those given bare are removed (the node's own key list
 * names them: presence.ts). The node sends all of a group's additions before its removals, so a
 * user who only changed connections never counts 0 on the way, and only real changes are told,
 * one PUBLISH per chunk. Nothing of the group is read but the fields named: before, one script
 * read the group whole for each node, so a group of 100,000 members stalled Redis at each
 * node's resync. \`last\` 1: the node has no member of the group left, its key list drops it.
 * ARGV: P node group last(1|0) adds [sid user weight] x adds, then [sid]...
 */
export const SYNC_GROUP = `
local P = ARGV[1]
${MEMBER_HELPERS}
local node, group = ARGV[2], ARGV[3]
local key = P..'pg:'..group
local prefix = node..'\\n'
local removals = 6 + 3 * tonumber(ARGV[5])
local changes = {}
for i = 6, removals - 1, 3 do
  local field = prefix..ARGV[i]
  listMember(node, group, ARGV[i])
  if redis.call('HSET', key, field, ARGV[i + 1]..'\\n'..ARGV[i + 2]) == 1 then
    indexMember(group, ARGV[i + 1], field)
    if counted(group, ARGV[i + 1], 1) then changes[#changes + 1] = '+'..ARGV[i + 1] end
  end
end
for i = removals, #ARGV do
  local field = prefix..ARGV[i]
  local value = redis.call('HGET', key, field)
  if value then
    redis.call('HDEL', key, field)
    local user = userof(value)
    unindexMember(group, user, field)
    if counted(group, user, -1) then changes[#changes + 1] = '-'..user end
  end
  unlistMember(node, group, ARGV[i])
end
if ARGV[4] == '1' then redis.call('SREM', P..'nk:'..node, key) end
emptied(group)
tell(group, changes)
return #changes
`;

/**
 * A \`presence\` op's answer for \`group\`: with its users listed when it has at most \`maxList\`
 * (and the client did not ask for counts only), else its totals alone, from the sizes of P
 * pc:GROUP and P pg:GROUP, without reading a member: a client asking about a group of 20,000
 * members at its rate limit would otherwise have Redis read all of them each time.
 *
 * The list is read from P pc:GROUP (user -> member connections, at most maxList entries), not
 * from P pg:GROUP's member connections (up to 100 per user: a group of 30 users with 100
 * connections each cost 2.1 ms of Redis per answer, so five clients at the default rate limit
 * saturated it). P pc: counts every node not yet forgotten, which is the live nodes unless one
 * has a heartbeat older than presence_ttl or is being forgotten (P nf): only then is that
 * node's part left out, within a budget of PRESENCE_SCAN_FACTOR x maxList steps: in a group of
 * at most that many member connections by reading them; in a larger one by counting each listed
 * user's connections on each such node in P pm:GROUP (user first: one ZLEXCOUNT, no member
 * read), or, when users x dead nodes is past the budget (several dead at once), on the dead
 * nodes its presence (P pu:USER, one read) names. Past the budget even so, or with P pm: not in
 * step with P pg: (written by an older version), the list names the dead nodes' users until
 * they are forgotten (within presence_ttl and a third after the last heartbeat), as the totals do.
 * ARGV: P group maxList countsOnly(1|0) aliveSince
 * -> {users, conns} (totals only) | {-1, 0, user, connections, user, connections...}
 */
/** A \`presence\` list leaves a dead node's members out by reading at most this many member connections per user listed. */
export const PRESENCE_SCAN_FACTOR = 4;

export const PRESENCE_ANSWER = `
local P, group = ARGV[1], ARGV[2]
local users = redis.call('HLEN', P..'pc:'..group)
if ARGV[4] == '1' or users > tonumber(ARGV[3]) then return {users, redis.call('HLEN', P..'pg:'..group)} end
local since, beats, counts, out = tonumber(ARGV[5]), {}, {}, {-1, 0}
local budget = ${PRESENCE_SCAN_FACTOR} * tonumber(ARGV[3])
-- The nodes not yet forgotten that are not alive: heartbeat too old, or being forgotten (out of P nodes).
local dead = redis.call('ZRANGEBYSCORE', P..'nodes', '-inf', '('..ARGV[5])
for _, node in ipairs(redis.call('SMEMBERS', P..'nf')) do
  if redis.call('ZSCORE', P..'nodes', node) == false then dead[#dead + 1] = node end
end
local conns = redis.call('HLEN', P..'pg:'..group)
if #dead == 0 or conns > budget then
  local counted = #dead > 0 and redis.call('ZCARD', P..'pm:'..group) == conns
  -- Every user on every dead node while that fits the budget; past it (several nodes dead at
  -- once), only on the dead nodes where the user's presence (P pu:USER) says it has
  -- connections, one read per user, until the budget is spent.
  local everyNode, steps = users * #dead <= budget, 0
  local isDead = {}
  for _, node in ipairs(dead) do isDead[node] = true end
  local raw = redis.call('HGETALL', P..'pc:'..group)
  for i = 1, #raw, 2 do
    local n = tonumber(raw[i + 1])
    if counted then
      local on = everyNode and dead or {}
      if not everyNode then
        -- The user's presence names the few nodes it is on: read whole (not one field per dead
        -- node, which made the work users x dead nodes again), each field a step.
        local held = redis.call('HGETALL', P..'pu:'..raw[i])
        for j = 1, #held, 2 do
          if isDead[held[j]] and tonumber(held[j + 1]) > 0 then on[#on + 1] = held[j] end
        end
        steps = steps + 1 + #held / 2 + #on
        counted = steps <= budget
      end
      for _, node in ipairs(counted and on or {}) do
        local name = raw[i]..'\\n'..node..'\\n'
        n = n - redis.call('ZLEXCOUNT', P..'pm:'..group, '['..name, '('..string.sub(name, 1, -2)..'\\11')
      end
    end
    if n > 0 then
      out[#out + 1] = raw[i]
      out[#out + 1] = n
    end
  end
  return out
end
local raw = redis.call('HGETALL', P..'pg:'..group)
for i = 1, #raw, 2 do
  local node = string.sub(raw[i], 1, string.find(raw[i], '\\n', 1, true) - 1)
  local live = beats[node]
  if live == nil then
    local beat = redis.call('ZSCORE', P..'nodes', node)
    live = beat ~= false and tonumber(beat) >= since
    beats[node] = live
  end
  if live then
    local user = string.sub(raw[i + 1], 1, string.find(raw[i + 1], '\\n', 1, true) - 1)
    if not counts[user] then
      out[#out + 1] = user
      out[#out + 1] = 0
      counts[user] = #out
    end
    out[counts[user]] = out[counts[user]] + 1
  end
end
return out
`;
