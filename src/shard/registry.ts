/**
 * The open connections of one shard, and the announced ones' sockets by session id and by
 * user: the broker addresses its deliveries by sid (one connection) or by user (all of theirs).
 */
import type { Connection, Socket } from './connection.js';

export class ConnectionRegistry {
  /**
   * Every open connection, announced or not (the sweep and shutdown walk it). Connections, not
   * sockets: the sweep reads each one's fields four times a second, and through its socket
   * that was a native call (getUserData) and a set lookup more per connection.
   */
  readonly connections = new Set<Connection>();
  private readonly bySid = new Map<string, Socket>();
  private readonly byUser = new Map<string, Set<Socket>>();

  get size(): number {
    return this.connections.size;
  }

  /** The socket opened: from now on `conn.ws` is set. */
  add(ws: Socket, conn: Connection): void {
    conn.ws = ws;
    this.connections.add(conn);
  }

  /** Indexes an authenticated connection; from now on the broker may address it. */
  announce(ws: Socket, conn: Connection): void {
    const user = conn.user!;
    conn.announced = true;
    this.bySid.set(conn.sid, ws);
    let mine = this.byUser.get(user);
    if (!mine) this.byUser.set(user, (mine = new Set()));
    mine.add(ws);
  }

  remove(ws: Socket, conn: Connection): void {
    this.connections.delete(conn);
    if (!conn.announced) return;
    this.bySid.delete(conn.sid);
    const mine = this.byUser.get(conn.user!);
    mine?.delete(ws);
    // An empty set per departed user would grow without bound.
    if (mine && mine.size === 0) this.byUser.delete(conn.user!);
  }

  sid(sid: string): Socket | undefined {
    return this.bySid.get(sid);
  }

  user(user: string): ReadonlySet<Socket> | undefined {
    return this.byUser.get(user);
  }
}
