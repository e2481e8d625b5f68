// The renderer's entry. In Electron the preload has set window.driveTwin; in a plain
// browser (`npm run web`) the bridge client becomes window.driveTwin, with the token
// from the page's URL fragment. Either way components only ever see window.driveTwin.
import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { installBridge, tokenFromHash } from './bridge-client';

const TOKEN_KEY = 'drivetwin.token';

/**
 * The bridge's token: from the #fragment the bridge printed (then kept in this tab's
 * sessionStorage, which is this origin's alone — port included — and never sent
 * anywhere, so a reload still works), and dropped from the address bar, the history
 * and screenshots.
 */
function bridgeToken(): string | null {
  const fromHash = tokenFromHash(window.location.hash);
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    const url = new URL(window.location.href);
    url.hash = '';
    window.history.replaceState(null, '', url.pathname + url.search);
  }
  return fromHash ?? sessionStorage.getItem(TOKEN_KEY);
}

if (!window.driveTwin) installBridge({ token: bridgeToken() });

const target = document.getElementById('app');
if (target) mount(App, { target });
