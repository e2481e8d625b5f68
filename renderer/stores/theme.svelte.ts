// Light or dark, as the OS says. Canvases read their colours from the CSS tokens
// and redraw when `version` changes.
class Theme {
  version = $state(0);

  start(): void {
    const query = window.matchMedia('(prefers-color-scheme: dark)');
    query.addEventListener('change', () => this.version++);
  }

  /** A CSS custom property of :root, e.g. color('--map-done'). */
  color(name: string): string {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
  }
}

export const theme = new Theme();
