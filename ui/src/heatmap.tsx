/**
 * A grid of coloured cells (rows x columns) with labels; value null is an empty cell. Colours run from the
 * background to the accent colour over [min, max]; every cell's title gives its exact value.
 */
export function Heatmap({
  rows,
  columns,
  value,
  min,
  max,
  format,
  testId,
}: {
  rows: string[];
  columns: string[];
  value: (row: number, column: number) => number | null;
  min: number;
  max: number;
  format: (v: number) => string;
  testId: string;
}) {
  const span = max - min || 1;
  return (
    <div class="heatmap-wrap">
      <table class="heatmap" data-testid={testId} data-rows={rows.length} data-columns={columns.length}>
        <thead>
          <tr>
            <th />
            {columns.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={r}>
              <th scope="row">{r}</th>
              {columns.map((c, j) => {
                const v = value(i, j);
                const level = v === null ? null : Math.max(0, Math.min(1, (v - min) / span));
                return (
                  <td
                    key={c}
                    class="cell"
                    title={v === null ? `${r} · ${c}: none` : `${r} · ${c}: ${format(v)}`}
                    ref={(el) => {
                      // CSSOM, not a style attribute: allowed under the page's style-src 'self'.
                      el?.style.setProperty("--level", level === null ? "0" : String(level));
                    }}
                    data-empty={v === null ? "" : undefined}
                  >
                    {v === null ? "" : format(v)}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
