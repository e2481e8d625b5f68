// The phase of the job on screen, named once for the store and the words about it.

/**
 * What the job is doing, from its latest event: starting (nothing heard yet), comparing
 * (before an update), copying, flushing (the last flush and commit), paused, verifying
 * (after the copy), finished (done, or ended while the backend was out of reach).
 */
export type Phase =
  'idle' | 'starting' | 'comparing' | 'copying' | 'flushing' | 'paused' | 'verifying' | 'finished';
