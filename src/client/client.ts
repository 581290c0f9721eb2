/**
 * The ocs.v1 client: one logical session over as many WebSocket connections as it takes.
 * It authenticates (a token, or a callback asked again before `exp` and after a 4001),
 * re-joins every group after a reconnect (recovering history groups from their last offset),
 * settles each request by its `ack`/`err`, acknowledges stored messages, and hands the
 * application each message once.
 */
import { ClientErrorCodes, OcsError, isErrorCode } from '../protocol/errors.js';
import { NAME_PATTERN } from '../protocol/frames.js';
import { AckBatcher } from './acks.js';
import type { ClientCodec } from './codec.js';
import { Connection, MAX_FRAME_BYTES, type ConnectionLimits } from './connection.js';
import { Emitter } from './emitter.js';
import { MAX_FRAME_HEAP_BYTES } from './heap-cost.js';
import { Groups } from './groups.js';
import { checkedOptions } from './options.js';
import { Pacer } from './pacer.js';
import { DEFAULT_RECONNECT, decideReconnect, type ReconnectOptions } from './reconnect.js';
import { RecoveryBook, type Verdict } from './recovery.js';
import { Requests } from './requests.js';
import { SeenIds } from './seen-ids.js';
import { NamedTimers } from './timers.js';
import { resolveWebSocket, type WebSocketConstructor } from './socket.js';
import { TokenKeeper, tokenWithin } from './token.js';
import type { AnyOptions, ClientEvents, ClientOptions, ConnectionState, HistoryPage, JoinOptions, JoinResult, Message, PresenceSnapshot, PublishOptions, SendOptions, Welcome } from './types.js';
import { isMessage, toHistoryPage, toMessageId, toPresenceEvent, toPresenceSnapshot } from './replies.js';

export class OcsClient extends Emitter<ClientEvents> {
  private readonly options: Readonly<ClientOptions>;
  private readonly WebSocketClass: WebSocketConstructor;
  private readonly policy: ReconnectOptions | false;
  private readonly limits: ConnectionLimits;
  private readonly autoAck: boolean;
  private readonly requests: Requests;
  private readonly groups = new Groups();
  private readonly book = new RecoveryBook();
  /** Ids of stored messages (`ackReq`) seen lately, and of the others. */
  private readonly seen: SeenIds;
  private readonly seenLive: SeenIds;
  /** Acks go ahead of the frames waiting for the pace: they are what frees the server's window for more. */
  private readonly acks = new AckBatcher((frame) => {
    if (this.currentState === 'open') this.sendFrame(frame, true);
  });
  /** Manual mode: ids the application acknowledged, so that a redelivery of them is acknowledged again. */
  private readonly acked: SeenIds;
  private readonly tokens: TokenKeeper | null;
  private connection: Connection | null = null;
  private msgpack: ClientCodec | null = null;
  private currentState: ConnectionState = 'idle';
  private welcomeFrame: Welcome | null = null;
  private everOpened = false;
  private attempt = 0;
  private received = 0;
  private handed = 0;
  private duplicates = 0;
  private connections = 0;
  private readonly timers = new NamedTimers<'reconnect' | 'stable' | 'token'>();
  private connectWaiters: Array<{ resolve(w: Welcome): void; reject(e: OcsError): void }> = [];

  constructor(given: ClientOptions) {
    super();
    const options = (this.options = checkedOptions(given));
    this.WebSocketClass = resolveWebSocket(options.WebSocket);
    this.policy = options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.limits = { connectTimeoutMs: options.connectTimeoutMs ?? 10_000, maxFrameBytes: options.maxFrameBytes ?? MAX_FRAME_BYTES, maxFrameHeapBytes: options.maxFrameHeapBytes ?? MAX_FRAME_HEAP_BYTES };
    this.autoAck = options.autoAck ?? true;
    // A request that times out while its frame waits for its turn (the pace) is not sent after.
    this.requests = new Requests(options.requestTimeoutMs ?? 10_000, options.maxQueued ?? 1000, (ref) => this.connection?.cancel(ref));
    this.seen = new SeenIds(options.dedupeWindow ?? 10_000);
    this.seenLive = new SeenIds(options.dedupeWindow ?? 10_000);
    this.acked = new SeenIds(options.dedupeWindow ?? 10_000);
    this.tokens = options.token === undefined ? null : new TokenKeeper(options.token, (token) => this.sendAuth(token), (err) => this.report(err));
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** Counters since the client was made: frames received, messages handed over, duplicates dropped, connections opened. */
  get stats(): Readonly<{ frames: number; messages: number; duplicates: number; connections: number }> {
    return { frames: this.received, messages: this.handed, duplicates: this.duplicates, connections: this.connections };
  }

  /** The encoding of the current connection: what the server picked of what the client offered. */
  get encoding(): 'json' | 'msgpack' {
    return this.connection?.encoding ?? 'json';
  }

  /** The current connection's `welcome` (null while there is none). */
  get welcome(): Welcome | null {
    return this.currentState === 'open' ? this.welcomeFrame : null;
  }

  /** Connects (once; later calls wait for the same connection) and resolves with its `welcome`. */
  connect(): Promise<Welcome> {
    if (this.currentState === 'closed') return Promise.reject(new OcsError('E_CLOSED'));
    if (this.currentState === 'open') return Promise.resolve(this.welcomeFrame!);
    const waiting = new Promise<Welcome>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.currentState === 'idle') void this.dial(false);
    return waiting;
  }

  /** Joins `group`, now or when connected, and again after every reconnect (E_TIMEOUT: its join went unanswered, but it stays wanted). */
  join(group: string, options: JoinOptions = {}): Promise<JoinResult> {
    if (this.currentState === 'closed') return Promise.reject(new OcsError('E_CLOSED'));
    // Refused here: a name the server refuses without a `ref` (one over max_payload closes the
    // connection) would be joined again, and refused again, at every reconnect.
    if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return Promise.reject(new OcsError('E_BAD_FRAME', `a group name is 1 to 128 of A-Z a-z 0-9 _ . : @ / # + -, not ${String(group).slice(0, 40)}`));
    const answered = this.groups.want(group, options.presence === true, this.requests.timeoutMs);
    if (this.connected()) this.sendJoin(group);
    return answered;
  }

  /** Leaves `group`: it is not joined again after a reconnect. */
  async leave(group: string): Promise<void> {
    const wanted = this.groups.drop(group, new OcsError('E_CLOSED', `left ${group} before the server answered the join`));
    this.book.forget(group);
    if (wanted && this.connected()) await this.request('leave', { group });
  }

  /** Publishes to every online member of `group` (at most once); resolves with the message id. */
  async publish(group: string, data: unknown, options: PublishOptions = {}): Promise<string> {
    return toMessageId(await this.request('pub', { group, data, pri: options.pri }));
  }

  /** A stored direct message to `to` (at least once); resolves with its id once stored. */
  async send(to: string, data: unknown, options: SendOptions = {}): Promise<string> {
    return toMessageId(await this.request('send', { to, data, pri: options.pri, at: options.at }));
  }

  /** A stored message to exactly one member of `group`; resolves with its id once stored. */
  async any(group: string, data: unknown, options: AnyOptions = {}): Promise<string> {
    return toMessageId(await this.request('any', { group, data, pri: options.pri, strategy: options.strategy }));
  }

  /** Who is in `group` now (`counts`: totals only). */
  async presence(group: string, options: { counts?: boolean } = {}): Promise<PresenceSnapshot> {
    return toPresenceSnapshot(await this.request('presence', { group, counts: options.counts === true ? true : undefined }));
  }

  /** Kept messages of a history group after offset `since` (default 0: from the start). */
  async history(group: string, options: { since?: number; limit?: number } = {}): Promise<HistoryPage> {
    return toHistoryPage(await this.request('history', { group, since: options.since ?? 0, limit: options.limit }));
  }

  /** Acknowledges a stored message (with `autoAck: false`; automatic otherwise). */
  ack(id: string): void {
    this.acked.add(id);
    this.ackSoon(id);
  }

  /** Closes for good: pending requests fail with E_CLOSED, the socket is sent its close frame. */
  close(): Promise<void> {
    if (this.currentState === 'closed') return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.once('closed', () => resolve()));
    this.finish(1000, 'closed by the application');
    return closed;
  }

  // ---- connection lifecycle ----------------------------------------------------------------

  private async dial(refreshToken: boolean): Promise<void> {
    this.setState(this.everOpened ? 'reconnecting' : 'connecting');
    let token: string | undefined;
    try {
      if (this.tokens !== null) token = await tokenWithin(this.tokens.get(refreshToken), this.limits.connectTimeoutMs, this.timers);
      if (this.options.encoding === 'msgpack' && this.msgpack === null) this.msgpack = (await import('./msgpack-codec.js')).msgpackCodec;
    } catch (err) {
      if (this.currentState === 'closed') return;
      this.report(err instanceof Error ? err : new Error(String(err)));
      return this.connectionLost(1006, 'token or codec unavailable');
    }
    if (this.currentState === 'closed') return;
    let url = this.options.url;
    if (token === undefined && this.options.user !== undefined) url += `${url.includes('?') ? '&' : '?'}user=${encodeURIComponent(this.options.user)}`;
    try {
      const connection: Connection = new Connection(this.WebSocketClass, url, this.msgpack, token, this.limits, {
        frame: (frame) => this.onFrame(frame),
        closed: (code, reason) => {
          if (connection === this.connection) this.connectionLost(code, reason);
        },
        undecodable: (reason) => this.report(new OcsError('E_BAD_FRAME', `a message from the server is not a frame this client can read (${reason}); it was dropped`)),
      });
      this.connection = connection;
    } catch (err) {
      // A malformed URL: no retry can fix it.
      this.report(err instanceof Error ? err : new Error(String(err)));
      return this.finish(1006, `cannot open ${url}`);
    }
  }

  private connectionLost(code: number, reason: string): void {
    this.connection = null;
    this.timers.clearAll();
    this.tokens?.stop();
    this.groups.connectionClosed();
    this.acks.clear();
    this.requests.failInFlight('E_DISCONNECTED');
    if (this.currentState === 'closed') return;
    const decision =
      this.policy === false
        ? ({ action: 'stop', reason: 'reconnect disabled' } as const)
        : code === 4001 && !(this.tokens?.canRefresh ?? false)
          ? ({ action: 'stop', reason: 'unauthorized, and the token cannot be refreshed' } as const)
          : decideReconnect(code, this.attempt, this.policy, this.options.random);
    if (decision.action === 'stop') return this.finish(code, reason || decision.reason);
    this.attempt++;
    this.emit('disconnect', { code, reason, retryInMs: decision.delayMs });
    if (this.closedByListener()) return;
    this.setState('reconnecting');
    this.setTimer('reconnect', decision.delayMs, () => void this.dial(decision.refreshToken));
  }

  private finish(code: number, reason: string): void {
    // The acks of messages already handed over (a listener closing the client mid-backlog), at
    // once and whatever the pace: else they all come again.
    this.acks.flush();
    this.connection?.flushFirst();
    this.connection?.close(1000, reason);
    this.connection = null;
    this.timers.clearAll();
    this.tokens?.stop();
    this.setState('closed');
    const err = new OcsError('E_CLOSED', `${ClientErrorCodes.E_CLOSED.message} (close ${code}${reason ? `: ${reason}` : ''})`);
    this.requests.failAll('E_CLOSED');
    this.groups.failAll(err);
    for (const waiter of this.connectWaiters.splice(0)) waiter.reject(err);
    this.emit('disconnect', { code, reason });
    this.emit('closed', { code, reason });
  }

  private onWelcome(frame: Record<string, unknown>): void {
    const welcome = frame as unknown as Welcome;
    this.connection!.welcomed(this.options.heartbeatMs ?? 15_000, Pacer.limitsOf(welcome));
    const ackIds = welcome.limits?.ackIds;
    this.acks.perFrame = typeof ackIds === 'number' && ackIds >= 1 ? Math.min(Math.floor(ackIds), 1000) : 1;
    this.welcomeFrame = welcome;
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.connections++;
    // Before any listener of `state` or `open` is told: what they ask for goes after (client.md).
    for (const group of this.groups.names()) this.sendJoin(group);
    this.requests.drainQueue((f) => this.sendFrame(f));
    this.setState('open');
    if (this.closedByListener()) return;
    const policy = this.policy;
    if (policy !== false) this.setTimer('stable', policy.stableMs, () => (this.attempt = 0));
    if (typeof welcome.expiresAt === 'number') this.tokens?.expiresAt(welcome.expiresAt);
    this.emit('open', { ...welcome, reconnected });
    for (const waiter of this.connectWaiters.splice(0)) waiter.resolve(welcome);
  }

  // ---- frames in ---------------------------------------------------------------------------

  private onFrame(frame: Record<string, unknown>): void {
    this.received++;
    const ref = typeof frame.ref === 'string' ? frame.ref : undefined;
    switch (frame.op) {
      // A connection's first frame is its `welcome` (PROTOCOL.md): messages before it are not the server's, or not yet ours.
      case 'msg':
        if (this.currentState === 'open') this.deliver(frame as unknown as Message);
        return;
      case 'batch':
        if (!Array.isArray(frame.msgs)) return;
        // Checked per message: a listener may close the client half-way through a batch.
        for (const msg of frame.msgs as Message[]) if (this.currentState === 'open') this.deliver(msg);
        return;
      case 'welcome':
        if (typeof frame.user !== 'string' || typeof frame.sid !== 'string' || this.currentState === 'open') return;
        return this.onWelcome(frame);
      case 'joined':
        if (ref !== undefined) this.onJoined(ref, frame);
        return;
      case 'presence':
        if (ref !== undefined) this.requests.resolve(ref, frame);
        else {
          const event = toPresenceEvent(frame);
          if (event !== null) this.emit('presence', event);
        }
        return;
      case 'left':
      case 'ack':
      case 'history':
        if (ref !== undefined) this.requests.resolve(ref, frame);
        return;
      case 'err':
        return this.onErr(ref, frame);
      default:
        return; // pong, and ops a newer server may add
    }
  }

  private deliver(msg: Message): void {
    if (!isMessage(msg)) return;
    let verdict: Verdict = 'deliver';
    // Positions are kept for the groups joined only: a server's messages of others would grow the book.
    const tracked = msg.offset !== undefined && typeof msg.group === 'string' && this.groups.has(msg.group);
    if (tracked) verdict = this.book.check(msg.group!, msg.offset, msg.epoch);
    // Stored messages in a window of their own: group messages in the same one pushed out the ids a reconnect then redelivered, in that order.
    const seen = msg.ackReq === true ? this.seen : this.seenLive;
    if (verdict !== 'duplicate' && !seen.add(msg.id)) verdict = 'duplicate';
    if (verdict === 'duplicate') {
      this.duplicates++;
      // Redelivered because our ack was lost: acknowledge it again (if the application did).
      if (msg.ackReq === true && (this.autoAck || this.acked.has(msg.id))) this.ackSoon(msg.id);
      return;
    }
    if (verdict === 'gap' || verdict === 'epoch') this.emit('gap', { group: msg.group!, position: this.book.position(msg.group!)!, reason: verdict === 'gap' ? 'offset_gap' : 'new_epoch' });
    if (this.closedByListener()) return;
    if (!this.emit('message', msg)) {
      // A listener threw: no ack, and its redelivery (or, in a history group, its replay at the next re-join) is let through.
      seen.delete(msg.id);
      if (tracked) this.book.failed(msg.group!, msg.offset, msg.epoch);
      return;
    }
    if (tracked) this.book.handed(msg.group!, msg.offset);
    this.handed++;
    if (msg.ackReq === true && this.autoAck) this.ackSoon(msg.id);
  }

  private onJoined(ref: string, frame: Record<string, unknown>): void {
    const sent = this.groups.takeSent(ref);
    if (sent === undefined) return;
    const outcome = this.book.joined(sent.group, frame, sent.since);
    const result: JoinResult = outcome.history ? { group: sent.group, history: true, recovered: outcome.recovered, position: { ...outcome.position } } : { group: sent.group, history: false };
    if (outcome.history && !outcome.recovered) this.emit('gap', { group: sent.group, position: { ...outcome.position }, reason: 'not_recovered' });
    if (this.closedByListener()) return;
    const rejoin = this.groups.answered(sent.group, result);
    this.emit('joined', { ...result, rejoin });
  }

  private onErr(ref: string | undefined, frame: Record<string, unknown>): void {
    const code = isErrorCode(frame.code) ? frame.code : 'E_INTERNAL';
    const err = new OcsError(code, typeof frame.message === 'string' ? frame.message : String(code));
    if (ref !== undefined && this.groups.isJoinRef(ref)) {
      const sent = this.groups.takeSent(ref);
      // Overloaded, over the rate (a server that states no limits to pace by), or a cluster node
      // without Redis (a history group): the server did nothing, so the join (a re-join too) is
      // tried again, not given up.
      if (sent !== undefined && (code === 'E_OVERLOADED' || code === 'E_RATE_LIMITED' || code === 'E_CLUSTER_UNAVAILABLE')) this.groups.retryLater(sent.group, this.options.random ?? Math.random, (group) => this.sendJoin(group));
      else if (sent !== undefined) {
        const awaited = this.groups.refused(sent.group, err);
        this.book.forget(sent.group);
        // A re-join nobody awaits: told on `error`, or the application would think itself a member.
        if (!awaited) this.report(new OcsError(code, `the re-join of ${sent.group} was refused, so it is no longer joined: ${err.message}`));
      }
      return;
    }
    if (ref !== undefined && this.requests.reject(ref, err)) return;
    // An ack of a message the server no longer waits for (a redelivery raced its first ack): expected.
    if (code === 'E_UNKNOWN_ID') return;
    // An ack the server could not take (its broker was behind): the message comes again, and is acked again then.
    if (code === 'E_OVERLOADED' && typeof frame.id === 'string') return;
    if (this.hasListeners('error')) this.emit('error', err);
  }

  // ---- frames out --------------------------------------------------------------------------

  private request(op: string, fields: Record<string, unknown>): Promise<unknown> {
    if (this.currentState === 'closed') return Promise.reject(new OcsError('E_CLOSED'));
    const frame: Record<string, unknown> & { ref: string } = { op, ref: this.requests.nextRef() };
    for (const key in fields) if (fields[key] !== undefined) frame[key] = fields[key];
    if (!this.connected()) return this.requests.queue(frame);
    const answered = this.requests.expect(frame.ref);
    // A frame the codec cannot encode (a BigInt, a cycle) fails its own request, not the client.
    // A token refresh goes ahead of what waits for the pace: behind it, the token could expire.
    this.requests.sending(frame, (f) => this.sendFrame(f, op === 'auth'));
    return answered;
  }

  private sendJoin(group: string): void {
    this.sendFrame(this.groups.joinFrame(group, this.requests.nextRef(), this.book.since(group)));
  }

  /** A refreshed token on the open connection; resolves with the new expiry, if any. */
  private async sendAuth(token: string): Promise<number | undefined> {
    if (this.currentState !== 'open') return undefined;
    const answer = (await this.request('auth', { token })) as { expiresAt?: unknown };
    return typeof answer.expiresAt === 'number' ? answer.expiresAt : undefined;
  }

  /** Acks go out gathered (acks.ts), on the connection they were asked on. */
  private ackSoon(id: string): void {
    if (this.currentState === 'open') this.acks.add(id);
  }

  private sendFrame(frame: Record<string, unknown>, first = false): void {
    this.connection?.send(frame, first);
  }

  // ---- small things ------------------------------------------------------------------------

  /**
   * Whether frames can go out now. Not while the state still says open in the `disconnect`
   * listeners: the connection is gone, and what they ask for waits for the next one.
   */
  private connected(): boolean {
    return this.currentState === 'open' && this.connection !== null;
  }

  /** Whether a listener just called closed the client (a method: TypeScript keeps `currentState` narrowed across the emit). */
  private closedByListener(): boolean {
    return this.currentState === 'closed';
  }

  private setState(state: ConnectionState): void {
    // Closed is for good: nothing a listener does on the way out opens it again.
    if (state === this.currentState || this.currentState === 'closed') return;
    this.currentState = state;
    this.emit('state', state);
  }

  private report(err: Error): void {
    if (this.hasListeners('error')) this.emit('error', err);
  }

  private setTimer(name: 'reconnect' | 'stable', ms: number, run: () => void): void {
    if (this.currentState !== 'closed') this.timers.set(name, ms, run);
  }
}
