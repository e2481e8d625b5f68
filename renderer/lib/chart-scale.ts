// Round numbers for a chart's axis, in the binary units the labels use.

/** The smallest 1, 2 or 5 × 10ⁿ of a binary unit (B, KiB, MiB…) at or above `value`. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1024 * 1024;
  let unit = 1;
  while (value / unit >= 1024) unit *= 1024;
  const v = value / unit;
  const decade = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) {
    if (step * decade >= v) return step * decade * unit;
  }
  return 10 * decade * unit;
}
