/**
 * JSON.parse with the place of a syntax error as line and column (1-based), so a hand-edited file is
 * reported as `devices.json:7:3: …` the way an editor jumps to it. V8 gives the place only inside
 * its message ("… in JSON at position 42", Node 22 adds "(line 3 column 5)"; "Unexpected end of
 * JSON input" means the end): we read that number, and fall back to the end of the text when a
 * future message carries none, which is where truncation (the common case) puts it anyway.
 */
export interface JsonSyntaxProblem {
  line: number;
  col: number;
  message: string;
}

export function lineAndColumn(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.max(0, Math.min(offset, text.length));
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: end - lineStart + 1 };
}

export function parseJsonLocated(text: string): { value: unknown } | { problem: JsonSyntaxProblem } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (err) {
    const raw = (err as Error).message;
    const at = /at position (\d+)/.exec(raw);
    const offset = at ? Number(at[1]) : text.length;
    const message = raw.replace(/\s*\(line \d+ column \d+\)/, '').replace(/ in JSON at position \d+/, '').replace(/ of JSON input$/, ' of the file (truncated?)');
    return { problem: { ...lineAndColumn(text, offset), message } };
  }
}
