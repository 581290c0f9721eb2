/**
 * FORGET_NODE: deletes a node's presence from Redis (its fields in P pu:USER and P pg:GROUP),
 * so that its users who have no member connection left elsewhere leave their groups (told as
 * in presence-scripts.ts). Run by any node for one whose heartbeat is older than presence_ttl,
 * and by a node for itself when it stops or starts its drain (every pm2 reload).
 *
 * It works in chunks, each call at most FORGET_CHUNK entries of the node's key list (P nk:NODE),
 * and the caller calls again while it answers "more" (presence.ts). Before, one script did the
 * whole node and read each of its groups whole, other nodes' members too: a node whose 60
 * clients had joined 1,000 groups each took one 1.3 s script when killed, which stalled every
 * node. A member connection is listed by name ("P pg:GROUP\nSID", presence-scripts.ts), so a
 * call reads only the node's own fields.
 *
 *   P nf   SET of the nodes being forgotten: taken out of P nodes at the first call (so they
 *          count as gone at once), listed here until the last. Every node's heartbeat reads it
 *          and goes on with each (presence.ts), so a forget left midway (the node forgetting
 *          itself stopped, the caller died) is finished by the next heartbeat of any node.
 *
 * Safe when several nodes forget one node at once: each entry is taken out of P nk:NODE in the
 * call that handles it, and a counter moves only when a field is really deleted. A node that
 * comes back while it is being forgotten (it was only stalled: its heartbeat found itself gone
 * and it writes its members again) is back in P nodes: the next call stops there.
 *
 * A key list written by an older version names the groups only ("P pg:GROUP", no LISTED mark):
 * such a group is read whole (HGETALL), and counts its fields against the call's limit, so a
 * call takes one such group at least and stops after the limit.
 *
 * ARGV: P node limit [staleBefore: a first call leaves a node that beat since alone]
 * -> 'more' | 'done'
 */
import { MEMBER_HELPERS } from './presence-scripts.js';

/** Entries of a node's key list one FORGET_NODE call takes at most (about 2 ms of Redis). */
export const FORGET_CHUNK = 100;

export const FORGET_NODE = `
local P = ARGV[1]
${MEMBER_HELPERS}
local node, limit, staleBefore = ARGV[2], tonumber(ARGV[3]) or ${FORGET_CHUNK}, tonumber(ARGV[4])
local nk, forgetting = P..'nk:'..node, P..'nf'
local beat = redis.call('ZSCORE', P..'nodes', node)
if redis.call('SISMEMBER', forgetting, node) == 1 then
  -- Under way. Back in P nodes: it was only stalled, and writes its members again itself.
  if beat then
    redis.call('SREM', forgetting, node)
    return 'done'
  end
else
  -- The first call. A node that beat since the caller saw it stale is alive; one with
  -- nothing left was forgotten already.
  if beat and staleBefore and tonumber(beat) >= staleBefore then return 'done' end
  if not beat and redis.call('EXISTS', nk) == 0 then return 'done' end
  redis.call('ZREM', P..'nodes', node)
  redis.call('SADD', forgetting, node)
end
local listed = redis.call('SISMEMBER', nk, LISTED) == 1
local prefix, pg = node..'\\n', P..'pg:'
local changes, touched = {}, {}
local function touch(group)
  if not changes[group] then
    changes[group] = {}
    touched[#touched + 1] = group
  end
  return changes[group]
end
local function forget(group, field, value)
  redis.call('HDEL', pg..group, field)
  local user = userof(value)
  unindexMember(group, user, field)
  local told = touch(group)
  if counted(group, user, -1) then told[#told + 1] = '-'..user end
end
local work = 0
for _, entry in ipairs(redis.call('SRANDMEMBER', nk, limit)) do
  if work >= limit then break end
  if entry ~= LISTED then
    work = work + 1
    if string.sub(entry, 1, #pg) == pg then
      local rest = string.sub(entry, #pg + 1)
      local nl = string.find(rest, '\\n', 1, true)
      if nl then
        -- One member connection: its field alone.
        local group, field = string.sub(rest, 1, nl - 1), prefix..string.sub(rest, nl + 1)
        local value = redis.call('HGET', pg..group, field)
        touch(group)
        if value then forget(group, field, value) end
      elseif not listed then
        -- An older version's list: the node's fields are found among all of the group's.
        local raw = redis.call('HGETALL', entry)
        work = work + #raw / 2
        touch(rest)
        for i = 1, #raw, 2 do
          if string.sub(raw[i], 1, #prefix) == prefix then forget(rest, raw[i], raw[i + 1]) end
        end
      end
    else
      redis.call('HDEL', entry, node)
    end
    redis.call('SREM', nk, entry)
  end
end
for _, group in ipairs(touched) do
  emptied(group)
  tell(group, changes[group])
end
local left = redis.call('SCARD', nk)
if left == 0 or (left == 1 and listed) then
  redis.call('DEL', nk)
  redis.call('SREM', forgetting, node)
  return 'done'
end
return 'more'
`;
