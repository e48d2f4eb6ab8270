/**
 * A strict parser for the XML subset an SVG file uses: an optional <?xml …?> declaration,
 * comments, one root element, attributes in single or double quotes, character data with the
 * five predefined entities and numeric character references, CDATA sections. Anything else (an
 * unclosed or mismatched tag, a bare '&' or '<', a duplicate attribute, text after the root)
 * throws an Error naming the offset: the test of "well-formed" for the heatmap.
 */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: (XmlElement | string)[];
}

const NAME = /[A-Za-z_:][A-Za-z0-9_:.-]*/y;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function parseXml(text: string): XmlElement {
  let pos = 0;
  const fail = (what: string): never => {
    throw new Error(`XML not well-formed at offset ${pos}: ${what} (near ${JSON.stringify(text.slice(pos, pos + 30))})`);
  };
  const skipSpace = () => {
    while (pos < text.length && ' \t\r\n'.includes(text[pos])) pos++;
  };
  const expect = (s: string) => {
    if (!text.startsWith(s, pos)) fail(`expected ${JSON.stringify(s)}`);
    pos += s.length;
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(text);
    if (!m) return fail('expected a name');
    pos += m[0].length;
    return m[0];
  };
  const decode = (raw: string, at: number): string =>
    raw.replace(/&([^;&]*);?/g, (whole, ref: string) => {
      if (!whole.endsWith(';')) {
        pos = at;
        fail(`'&' without a reference`);
      }
      if (ref in ENTITIES) return ENTITIES[ref];
      const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(ref);
      if (!m) {
        pos = at;
        fail(`unknown entity &${ref};`);
      }
      return String.fromCodePoint(parseInt((m as RegExpExecArray)[1] ?? (m as RegExpExecArray)[2], (m as RegExpExecArray)[1] ? 16 : 10));
    });
  const comment = () => {
    const end = text.indexOf('-->', pos + 4);
    if (end < 0) fail('unterminated comment');
    if (text.slice(pos + 4, end).includes('--')) fail("'--' inside a comment");
    pos = end + 3;
  };
  const misc = () => {
    for (;;) {
      skipSpace();
      if (text.startsWith('<!--', pos)) comment();
      else return;
    }
  };
  const element = (): XmlElement => {
    expect('<');
    const el: XmlElement = { name: name(), attributes: {}, children: [] };
    for (;;) {
      const before = pos;
      skipSpace();
      if (text.startsWith('/>', pos)) {
        pos += 2;
        return el;
      }
      if (text[pos] === '>') {
        pos++;
        break;
      }
      if (pos === before) fail('expected whitespace before an attribute');
      const attr = name();
      if (attr in el.attributes) fail(`duplicate attribute ${attr}`);
      skipSpace();
      expect('=');
      skipSpace();
      const quote = text[pos];
      if (quote !== '"' && quote !== "'") fail('attribute value must be quoted');
      const end = text.indexOf(quote, pos + 1);
      if (end < 0) fail('unterminated attribute value');
      const raw = text.slice(pos + 1, end);
      if (raw.includes('<')) fail("'<' in an attribute value");
      el.attributes[attr] = decode(raw, pos);
      pos = end + 1;
    }
    for (;;) {
      if (pos >= text.length) fail(`<${el.name}> is not closed`);
      if (text.startsWith('</', pos)) {
        pos += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}>`);
        skipSpace();
        expect('>');
        return el;
      }
      if (text.startsWith('<!--', pos)) comment();
      else if (text.startsWith('<![CDATA[', pos)) {
        const end = text.indexOf(']]>', pos);
        if (end < 0) fail('unterminated CDATA section');
        el.children.push(text.slice(pos + 9, end));
        pos = end + 3;
      } else if (text[pos] === '<') el.children.push(element());
      else {
        const end = text.indexOf('<', pos);
        const raw = text.slice(pos, end < 0 ? text.length : end);
        if (raw.includes(']]>')) fail("']]>' in character data");
        el.children.push(decode(raw, pos));
        pos += raw.length;
      }
    }
  };

  if (text.startsWith('<?xml', 0)) {
    const end = text.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    if (!/^<\?xml\s+version="1\.[0-9]"(\s+encoding="[A-Za-z][A-Za-z0-9._-]*")?\s*\?>$/.test(text.slice(0, end + 2))) fail('malformed XML declaration');
    pos = end + 2;
  }
  misc();
  const root = element();
  misc();
  if (pos !== text.length) fail('content after the root element');
  return root;
}

/** Every element of the tree, depth first, the root included. */
export function allElements(root: XmlElement): XmlElement[] {
  return [root, ...root.children.flatMap((c) => (typeof c === 'string' ? [] : allElements(c)))];
}
