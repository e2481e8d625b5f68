// Whether the backend can be reached, as window.driveTwin.onConnection says. While it
// is lost the screen keeps the last state it heard, marked as such; when it is back,
// whoever asked (App) catches up with the backend: drives, jobs, the job on screen.
import type { ConnectionStatus } from '../../preload/api';
import { api } from '../lib/api';

class Connection {
  state = $state<ConnectionStatus['state']>('connecting');
  reason = $state<ConnectionStatus['reason']>(null);
  /** Date.now() when the backend was last heard from. */
  lastHeard = $state(0);
  /** Connected at least once in this page. */
  everConnected = $state(false);
  /** Was connected, and is no longer: what is on screen is the last known state. */
  lost = $derived(this.everConnected && this.state !== 'connected');

  start(onConnected: (again: boolean) => void): void {
    api().onConnection((s) => {
      const again = this.everConnected;
      const was = this.state;
      this.state = s.state;
      this.reason = s.reason;
      this.lastHeard = s.lastHeard;
      if (s.state === 'connected' && was !== 'connected') {
        this.everConnected = true;
        onConnected(again);
      }
    });
  }
}

export const connection = new Connection();
