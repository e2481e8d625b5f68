// Apple's XML property lists, as `diskutil … -plist` prints them: just enough of the
// format (PropertyList-1.0.dtd) to read dict, array, string, integer, real, true,
// false, date and data. Comments and the prolog are skipped.

export type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };
export type PlistDict = { [key: string]: PlistValue };

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (whole, name: string) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[name] ?? whole;
  });
}

/** Parses a property list; throws on anything that is not one. */
export function parsePlist(xml: string): PlistValue {
  const tokens = [
    ...xml
      .replace(/<!--[\s\S]*?-->/g, '')
      .replace(/<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>/g, '')
      .matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>|([^<]+)/g),
  ];
  let at = 0;
  const next = (): RegExpMatchArray | undefined => {
    while (at < tokens.length && tokens[at][4] !== undefined && tokens[at][4].trim() === '') at++;
    return tokens[at++];
  };
  const textUntil = (tag: string): string => {
    let text = '';
    while (at < tokens.length && tokens[at][4] !== undefined) text += tokens[at++][4];
    const end = tokens[at++];
    if (!end || end[1] !== '/' || end[2] !== tag) throw new Error(`plist: <${tag}> not closed`);
    return unescapeXml(text);
  };
  const value = (open: RegExpMatchArray | undefined): PlistValue => {
    if (!open || open[4] !== undefined || open[1] === '/') throw new Error('plist: value expected');
    const tag = open[2];
    const empty = open[3] === '/';
    switch (tag) {
      case 'true':
      case 'false':
        if (!empty) textUntil(tag);
        return tag === 'true';
      case 'string':
      case 'date':
      case 'data':
        // A string keeps its spaces; dates and data are trimmed.
        if (empty) return '';
        return tag === 'string' ? textUntil(tag) : textUntil(tag).trim();
      case 'integer':
      case 'real':
        return Number(textUntil(tag).trim());
      case 'array': {
        const items: PlistValue[] = [];
        if (empty) return items;
        for (let t = next(); t && !(t[1] === '/' && t[2] === 'array'); t = next()) {
          items.push(value(t));
        }
        return items;
      }
      case 'dict': {
        const dict: PlistDict = {};
        if (empty) return dict;
        for (let t = next(); t && !(t[1] === '/' && t[2] === 'dict'); t = next()) {
          if (t[2] !== 'key') throw new Error('plist: <key> expected in <dict>');
          const key = textUntil('key');
          dict[key] = value(next());
        }
        return dict;
      }
      default:
        throw new Error(`plist: unknown element <${tag}>`);
    }
  };
  const root = next();
  if (!root || root[2] !== 'plist') throw new Error('plist: no <plist> element');
  return value(next());
}

/** A dict's value as a string, number, boolean or list of dicts, or undefined. */
export const str = (d: PlistDict | undefined, key: string): string | undefined =>
  typeof d?.[key] === 'string' ? (d[key] as string) : undefined;
export const num = (d: PlistDict | undefined, key: string): number | undefined =>
  typeof d?.[key] === 'number' ? (d[key] as number) : undefined;
export const bool = (d: PlistDict | undefined, key: string): boolean | undefined =>
  typeof d?.[key] === 'boolean' ? (d[key] as boolean) : undefined;
export const dicts = (d: PlistDict | undefined, key: string): PlistDict[] =>
  Array.isArray(d?.[key])
    ? (d[key] as PlistValue[]).filter(
        (v): v is PlistDict => typeof v === 'object' && v !== null && !Array.isArray(v),
      )
    : [];
export const strings = (d: PlistDict | undefined, key: string): string[] =>
  Array.isArray(d?.[key])
    ? (d[key] as PlistValue[]).filter((v): v is string => typeof v === 'string')
    : [];
