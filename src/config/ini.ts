// oslo.config's INI dialect, which kuryr.conf is written in. Generic INI libraries differ in ways
// that corrupt real configs: they cut values at an inline ';' or '#' (passwords!), reject `key: value`
// and treat dotted section names as nesting. Rules here are oslo's: comments only at line start,
// '=' or ':' separates, matching surrounding quotes are stripped, indented lines continue a value,
// a repeated key keeps the last value.
export type IniSections = Record<string, Record<string, string>>;

export class IniSyntaxError extends Error {}

export function parseOsloIni(text: string, file = 'config'): IniSections {
  const sections: IniSections = {};
  let section: Record<string, string> | undefined;
  let lastKey: string | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const where = `${file}:${index + 1}`;
    if (/^\s*([#;].*)?$/.test(raw)) {
      lastKey = undefined;
      return;
    }
    if (/^\s/.test(raw) && lastKey && section) {
      section[lastKey] = `${section[lastKey]}\n${raw.trim()}`;
      return;
    }
    const header = /^\[([^\]]+)\]\s*$/.exec(raw);
    if (header) {
      const name = (header[1] ?? '').trim();
      sections[name] ??= {};
      section = sections[name];
      lastKey = undefined;
      return;
    }
    const kv = /^([^=:\s][^=:]*?)\s*[=:]\s*(.*)$/.exec(raw);
    if (!kv)
      throw new IniSyntaxError(
        `${where}: expected "key = value" or "[section]", got ${JSON.stringify(raw.trim())}`,
      );
    if (!section) throw new IniSyntaxError(`${where}: "${kv[1]}" comes before any [section]`);
    let value = (kv[2] ?? '').trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0])
      value = value.slice(1, -1);
    lastKey = (kv[1] ?? '').trim();
    section[lastKey] = value;
  });
  return sections;
}
