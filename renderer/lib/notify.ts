// A desktop notification when a copy ends, in the browser (Electron's main process shows
// its own): asked for when the user starts a copy (a browser only asks on a click), shown
// when the job on screen ends, if the user allowed it.
import type { JobDone } from '../../preload/events';
import { formatBytes, formatDuration } from './format';
import { plainText } from './plain-words';

function available(): boolean {
  return typeof Notification !== 'undefined';
}

/** On the click that starts a copy: ask once, while the browser still lets us. */
export function askToNotify(): void {
  if (available() && Notification.permission === 'default') void Notification.requestPermission();
}

/** What the notification says for this end. */
export function endWords(d: JobDone): { title: string; body: string } {
  if (d.state !== 'done') {
    return {
      title: `DriveTwin: copy ${d.state === 'failed' ? 'failed' : 'stopped'} (job ${d.job})`,
      body: d.error ? plainText(d.error) : 'Everything copied so far is kept: it can be resumed.',
    };
  }
  const checked =
    d.verified === true ? ', verified' : d.verified === false ? ', but the copies differ' : '';
  return {
    title: `DriveTwin: copy finished (job ${d.job})`,
    body: `${formatBytes(d.bytesWritten)} written in ${d.seconds < 1 ? 'under a second' : formatDuration(d.seconds)}${checked}.`,
  };
}

export function notifyEnd(d: JobDone): void {
  if (!available() || Notification.permission !== 'granted') return;
  const { title, body } = endWords(d);
  new Notification(title, { body, tag: `drivetwin-job-${d.job}` });
}
