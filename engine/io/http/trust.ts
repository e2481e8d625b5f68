// Which certificate authorities an https download trusts: Node's own list, the
// system's (its store where this Node can read it — tls.getCACertificates('system')
// from Node 22.15 —, else the bundle Linux distributions keep in /etc), and the extra
// ones NODE_EXTRA_CA_CERTS names. Built once per process.

import fs from 'node:fs';
import tls from 'node:tls';

/** Where Linux distributions (and macOS, for the base system's) keep the system's bundle. */
const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Arch, Gentoo
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/ssl/cert.pem', // Alpine, macOS
];

type WithSystemStore = typeof tls & {
  getCACertificates?(type: 'default' | 'system' | 'bundled' | 'extra'): string[];
};

let context: tls.SecureContext | null = null;

/** The TLS context every https request is made with. */
export function trustedContext(): tls.SecureContext {
  context ??= tls.createSecureContext({ ca: authorities() });
  return context;
}

function authorities(): string[] {
  const withStore = tls as WithSystemStore;
  if (withStore.getCACertificates) {
    return [...withStore.getCACertificates('default'), ...withStore.getCACertificates('system')];
  }
  const found = [...tls.rootCertificates];
  const bundle = SYSTEM_BUNDLES.find((file) => fs.existsSync(file));
  for (const file of [bundle, process.env.NODE_EXTRA_CA_CERTS]) {
    if (!file) continue;
    try {
      found.push(fs.readFileSync(file, 'utf8'));
    } catch {
      // unreadable: Node warns about NODE_EXTRA_CA_CERTS itself
    }
  }
  return found;
}
