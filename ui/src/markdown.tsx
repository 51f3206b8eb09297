import type { ComponentChildren } from "preact";

/**
 * A small markdown renderer for model answers: fenced code, inline code, headings, lists, quotes, bold and
 * italics. It builds elements, never HTML strings, so nothing a model writes can become markup or script.
 * An unclosed fence (still streaming) renders as code so far.
 */
export function Markdown({ text }: { text: string }) {
  return <div class="markdown">{blocks(text)}</div>;
}

function blocks(text: string): ComponentChildren[] {
  const lines = text.replaceAll("\r\n", "\n").split("\n");
  const out: ComponentChildren[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const fence = /^\s*```\s*([\w+-]*)/.exec(line);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !/^\s*```\s*$/.test(lines[i]!)) body.push(lines[i++]!);
      i++;
      out.push(
        <div class="code-block" key={out.length}>
          {fence[1] ? <span class="code-lang">{fence[1]}</span> : null}
          <pre>
            <code>{body.join("\n")}</code>
          </pre>
        </div>,
      );
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const level = Math.min(heading[1]!.length + 2, 6);
      const Tag = `h${level}` as "h3";
      out.push(<Tag key={out.length}>{inline(heading[2]!)}</Tag>);
      i++;
      continue;
    }
    if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d+[.)]/.test(line);
      const items: string[] = [];
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i]!)) items.push(lines[i++]!.replace(/^\s*([-*+]|\d+[.)])\s+/, ""));
      const children = items.map((item, n) => <li key={n}>{inline(item)}</li>);
      out.push(ordered ? <ol key={out.length}>{children}</ol> : <ul key={out.length}>{children}</ul>);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i]!)) quoted.push(lines[i++]!.replace(/^\s*>\s?/, ""));
      out.push(<blockquote key={out.length}>{blocks(quoted.join("\n"))}</blockquote>);
      continue;
    }
    if (line.trim() === "") {
      i++;
      continue;
    }
    const paragraph: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "" && !/^\s*(```|#{1,6}\s|>|[-*+]\s|\d+[.)]\s)/.test(lines[i]!))
      paragraph.push(lines[i++]!);
    if (paragraph.length === 0) paragraph.push(lines[i++]!);
    out.push(<p key={out.length}>{inline(paragraph.join("\n"))}</p>);
  }
  return out;
}

/** `code`, **bold**, *italic* / _italic_; everything else is text. */
function inline(text: string): ComponentChildren[] {
  const out: ComponentChildren[] = [];
  const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\b_([^_]+)_\b/g;
  let at = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    if (match.index > at) out.push(text.slice(at, match.index));
    if (match[1] !== undefined) out.push(<code key={match.index}>{match[1]}</code>);
    else if (match[2] !== undefined) out.push(<strong key={match.index}>{match[2]}</strong>);
    else out.push(<em key={match.index}>{match[3] ?? match[4]}</em>);
    at = match.index + match[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}
