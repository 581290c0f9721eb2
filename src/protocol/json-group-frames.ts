/**
 * The `ocs.v1.json` frames of group history and presence (docs/PROTOCOL.md, History and
 * Presence), assembled as strings like the rest of json-codec.ts: names, ids and epochs need
 * no escaping (NAME_PATTERN; an epoch is hex), only `ref` and `data` go through JSON.
 */
import { refField } from './json-codec.js';

/**
 * A history group's `msg` without its closing brace, from the data's JSON text: what the
 * store keeps (persisted history is re-tagged when its epoch changes), and what msgTail()
 * completes.
 */
export function encodeHistoryMsgHead(id: string, from: string, group: string, dataJson: string, pri: number, ts: number): string {
  return `{"op":"msg","id":"${id}","from":"${from}","group":"${group}","data":${dataJson},"pri":${pri},"ts":${ts}`;
}

/** Completes a head from encodeHistoryMsgHead(): the message's offset and its group's epoch. */
export function msgTail(offset: number, epoch: string): string {
  return `,"offset":${offset},"epoch":"${epoch}"}`;
}

/**
 * `joined` of a group that keeps history: the group's top offset and epoch; `recovered` only
 * when the join asked to recover (`since`): true when every message after it was replayed.
 */
export function encodeHistoryJoined(group: string, ref: string | undefined, offset: number, epoch: string, recovered: boolean | undefined): string {
  const recoveredField = recovered === undefined ? '' : `,"recovered":${recovered}`;
  return `{"op":"joined","group":"${group}"${refField(ref)}${recoveredField},"offset":${offset},"epoch":"${epoch}"}`;
}

/** One page of a group's history: `msgs` are complete `msg` frames, oldest first. */
export function encodeHistoryPage(group: string, ref: string | undefined, msgs: readonly string[], offset: number, epoch: string, more: boolean): string {
  return `{"op":"history","group":"${group}"${refField(ref)},"msgs":[${msgs.join(',')}],"offset":${offset},"epoch":"${epoch}","more":${more}}`;
}

/**
 * The answer to `presence` is presenceAnswerHead() then presenceAnswerRest(): `users` (user id
 * → its connections in the group) unless only the totals were asked for or the group is too
 * large to list (users === null). In two, so that the rest is built once for every asker
 * (broker/presence-answers.ts). This is the part up to the asker's `ref`, included: all that
 * differs between two askers of one group.
 */
export function presenceAnswerHead(group: string, ref: string | undefined): string {
  return `{"op":"presence","group":"${group}"${refField(ref)}`;
}

/** A `presence` answer after its `ref`: the list (when given) and the totals, the same for every asker. */
export function presenceAnswerRest(users: ReadonlyMap<string, number> | null, totalUsers: number, totalConns: number): string {
  let list = '';
  if (users !== null) {
    const parts: string[] = [];
    for (const [user, conns] of users) parts.push(`"${user}":${conns}`);
    list = `,"users":{${parts.join(',')}}`;
  }
  return `${list},"total":{"users":${totalUsers},"conns":${totalConns}}}`;
}

/** A presence event: users who came (their first connection joined) and went (their last left). */
export function encodePresenceEvent(group: string, joins: readonly string[], leaves: readonly string[]): string {
  return `{"op":"presence","group":"${group}","joins":${names(joins)},"leaves":${names(leaves)}}`;
}

/** The `ack` of a `pub` to a group that keeps history: also the offset the message got. */
export function encodePubAck(ref: string | undefined, id: string, offset: number): string {
  return `{"op":"ack"${refField(ref)},"id":"${id}","offset":${offset}}`;
}

const names = (list: readonly string[]): string => (list.length === 0 ? '[]' : `["${list.join('","')}"]`);
