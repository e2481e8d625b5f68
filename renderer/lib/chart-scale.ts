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

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];

/**
 * Ticks for an axis of elapsed seconds: round times (0:10, 0:20… or 1:00, 2:00…), at
 * most `most` of them between `from` and `to`.
 */
export function timeTicks(from: number, to: number, most = 5): number[] {
  const span = Math.max(1, to - from);
  const step =
    TIME_STEPS.find((s) => span / s <= most - 1) ?? Math.ceil(span / (most - 1) / 3600) * 3600;
  const ticks: number[] = [];
  for (let t = Math.ceil(from / step) * step; t <= to + 1e-9; t += step) ticks.push(t);
  return ticks;
}
