/**
 * A small typed event emitter: the browser build has no node:events. Listeners that throw are
 * reported on `error` (or, with no `error` listener, thrown from a timer, as Node's emitter
 * would throw them), so one bad handler never breaks the client's own bookkeeping.
 */
export type Listener<T> = (value: T) => void;

export class Emitter<Events extends { error: unknown }> {
  private readonly listeners = new Map<keyof Events, Array<Listener<never>>>();

  /** Adds `listener`; the function returned removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const list = this.listeners.get(event);
    if (list) list.push(listener as Listener<never>);
    else this.listeners.set(event, [listener as Listener<never>]);
    return () => this.off(event, listener);
  }

  /** Like `on`, removed after its first call. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    const list = this.listeners.get(event);
    const index = list ? list.indexOf(listener as Listener<never>) : -1;
    if (index >= 0) list!.splice(index, 1);
  }

  protected hasListeners(event: keyof Events): boolean {
    return (this.listeners.get(event)?.length ?? 0) > 0;
  }

  /** Calls every listener of `event`; false if one of them threw (it is reported). */
  protected emit<K extends keyof Events>(event: K, value: Events[K]): boolean {
    const list = this.listeners.get(event);
    if (list === undefined || list.length === 0) return true;
    let ok = true;
    // One listener is the common case: no copy of the list for it.
    if (list.length === 1) {
      try {
        (list[0] as Listener<Events[K]>)(value);
      } catch (err) {
        ok = false;
        this.reportListenerError(event, err);
      }
      return ok;
    }
    for (const listener of list.slice()) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (err) {
        ok = false;
        this.reportListenerError(event, err);
      }
    }
    return ok;
  }

  private reportListenerError(event: keyof Events, err: unknown): void {
    if (event !== 'error' && this.hasListeners('error')) {
      this.emit('error', err as Events['error']);
      return;
    }
    setTimeout(() => {
      throw err;
    });
  }
}
