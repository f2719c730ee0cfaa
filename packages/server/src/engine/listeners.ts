/**
 * In-process listeners of something the engine commits (request changes, escalations), for
 * observers such as metrics: each is told after the commit, and one that throws never turns a
 * committed change into an error, nor keeps the others from hearing it.
 */
export class Listeners<T> {
  readonly #listeners = new Set<(value: T) => void>();

  /** Adds a listener; the function returned removes it. */
  add(listener: (value: T) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  emit(value: T): void {
    for (const listener of this.#listeners) {
      try {
        listener(value);
      } catch {
        // An observer (metrics) must never turn a committed change into an error.
      }
    }
  }
}
