// The renderer's entry. In Electron the preload has set window.driveTwin; in a plain
// browser (`npm run web`) the bridge client becomes window.driveTwin, with the token
// from the page's URL. Either way components only ever see window.driveTwin.
import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { installBridge, type BridgeClient } from './bridge-client';

function connect(): Promise<void> {
  if (window.driveTwin) return Promise.resolve();
  const client = installBridge() as BridgeClient;
  // The bridge has set its cookie from the token: keep the token out of the address bar,
  // the history and screenshots (reloads and reconnects still work).
  // (A token in the #hash set no cookie, so that one stays.)
  const url = new URL(window.location.href);
  if (url.searchParams.has('token')) {
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return client.connected;
}

const target = document.getElementById('app');
if (target) mount(App, { target, props: { connection: connect() } });
