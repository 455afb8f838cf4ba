// examples/kubernetes/ validated offline against the Kubernetes API schemas, with two npm tools:
//  - kubernetes-models 5.1.0: JSON schemas generated from Kubernetes' OpenAPI spec (fields up to
//    v1.34, e.g. PodSpec.hostnameOverride), compiled to ajv validators: types, enums, formats,
//    required fields;
//  - those schemas accept unknown fields (OpenAPI does), while a real API server rejects them
//    (strict field validation): so every key is also checked against kubernetes-models' type
//    declarations, read with the TypeScript compiler API (no emit, nothing built).
// Then what the templates must wire: --shard auto with the count from the settings, the shared
// volume, the HF token from a Secret (never a value in a manifest), the parts the finish Job waits for.
import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIR = path.join(ROOT, 'examples', 'kubernetes');

const MODELS: Record<string, { make: (o: any) => { validate(): void }; type: string }> = {
  'batch/v1 Job': { make: (o) => new Job(o), type: 'IJob' },
  'v1 ConfigMap': { make: (o) => new ConfigMap(o), type: 'IConfigMap' },
  'v1 PersistentVolumeClaim': { make: (o) => new PersistentVolumeClaim(o), type: 'IPersistentVolumeClaim' },
};

const docs = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) =>
    parseAllDocuments(readFileSync(path.join(DIR, f), 'utf8')).map((d) => {
      if (d.errors.length) throw new Error(`${f}: ${d.errors[0]!.message}`);
      return { file: f, obj: d.toJS() as any };
    }),
  );
const byName = (kind: string, name: string) => docs.find((d) => d.obj.kind === kind && d.obj.metadata?.name === name)!.obj;

/** Keys of `value` that its kubernetes-models type does not declare, as JSON paths. */
function unknownFields(): (typeName: string, value: unknown) => string[] {
  const virtual = path.join(ROOT, 'test', 'examples', '__k8s_types__.ts');
  const source = [
    "import type { IJob } from 'kubernetes-models/batch/v1/Job';",
    "import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';",
    "import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';",
    'export interface Roots { IJob: IJob; IConfigMap: IConfigMap; IPersistentVolumeClaim: IPersistentVolumeClaim }',
  ].join('\n');
  const options: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, types: [], skipLibCheck: true };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, v, ...rest) => (path.resolve(f) === virtual ? ts.createSourceFile(f, source, v) : getSourceFile(f, v, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => path.resolve(f) === virtual || fileExists(f);
  const program = ts.createProgram([virtual], options, host);
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(virtual)!;
  const roots = checker.getDeclaredTypeOfSymbol(checker.getSymbolAtLocation(sf)!.exports!.get('Roots' as ts.__String)!);
  const diag = ts.getPreEmitDiagnostics(program, sf);
  if (diag.length) throw new Error(ts.flattenDiagnosticMessageText(diag[0]!.messageText, '\n'));

  const walk = (t: ts.Type, v: unknown, at: string, out: string[]) => {
    t = checker.getNonNullableType(t);
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      const el = checker.isArrayType(t) ? checker.getTypeArguments(t as ts.TypeReference)[0]! : null;
      if (el) v.forEach((x, i) => walk(el, x, `${at}[${i}]`, out));
      return;
    }
    const index = t.getStringIndexType();
    for (const [k, x] of Object.entries(v)) {
      const prop = t.getProperty(k);
      if (prop) walk(checker.getTypeOfSymbol(prop), x, `${at}.${k}`, out);
      else if (index) walk(index, x, `${at}.${k}`, out);
      else out.push(`${at}.${k}`);
    }
  };
  return (typeName, value) => {
    const out: string[] = [];
    walk(checker.getTypeOfSymbol(roots.getProperty(typeName)!), value, '', out);
    return out;
  };
}

describe('examples/kubernetes against the Kubernetes schemas (offline)', () => {
  it('every manifest is a known API object that passes schema validation', () => {
    expect(docs.map((d) => `${d.obj.apiVersion} ${d.obj.kind}`).sort()).toEqual(['batch/v1 Job', 'batch/v1 Job', 'v1 ConfigMap', 'v1 PersistentVolumeClaim']);
    for (const { file, obj } of docs) {
      const m = MODELS[`${obj.apiVersion} ${obj.kind}`];
      expect(m, file).toBeDefined();
      expect(() => m!.make(obj).validate(), file).not.toThrow();
    }
  });

  it('no field the API does not know (a typo would be rejected by the API server)', () => {
    const unknown = unknownFields();
    for (const { file, obj } of docs) expect(unknown(MODELS[`${obj.apiVersion} ${obj.kind}`]!.type, obj), file).toEqual([]);
    // the checks catch what they are for
    const job = structuredClone(byName('Job', 'fastkvzip-extract'));
    expect(unknown('IJob', { ...job, spec: { ...job.spec, completionz: 3 } })).toEqual(['.spec.completionz']);
    job.spec.template.spec.containers[0].envFrom[0].configMapRef.nmae = 'x';
    expect(unknown('IJob', job)).toEqual(['.spec.template.spec.containers[0].envFrom[0].configMapRef.nmae']);
    expect(() => new Job({ ...job, spec: { ...job.spec, completions: '8' } }).validate()).toThrow(/completions must be integer/);
  });

  it('the extraction is an Indexed Job running --shard auto with the count of the settings, parts on the shared volume', () => {
    const settings = byName('ConfigMap', 'fastkvzip-settings');
    const job = byName('Job', 'fastkvzip-extract');
    expect(job.spec.completionMode).toBe('Indexed');
    expect(job.spec.completions).toBe(Number(settings.data.PARTS));
    expect(job.spec.parallelism).toBeLessThanOrEqual(job.spec.completions);
    const c = job.spec.template.spec.containers[0];
    expect(c.args.join(' ')).toMatch(/fastkvzip extract .*--shard auto --out "\/work\/parts\/part-\$JOB_COMPLETION_INDEX"/);
    expect(c.env.find((e: any) => e.name === 'FASTKVZIP_SHARD_COUNT').valueFrom.configMapKeyRef).toEqual({ name: 'fastkvzip-settings', key: 'PARTS' });
    expect(c.volumeMounts.find((m: any) => m.name === 'work').mountPath).toBe('/work');
    expect(job.spec.template.spec.volumes.find((v: any) => v.name === 'work').persistentVolumeClaim.claimName).toBe(byName('PersistentVolumeClaim', 'fastkvzip-work').metadata.name);
    expect(byName('PersistentVolumeClaim', 'fastkvzip-work').spec.accessModes).toEqual(['ReadWriteMany']);
    expect(settings.data.HF_HOME.startsWith('/work/')).toBe(true); // the model cache on the shared volume
    expect(settings.data.FASTKVZIP_CACHE.startsWith('/work/')).toBe(true);
  });

  it('the finish Job waits for PARTS complete parts, then merges, trains on all its GPUs and exports', () => {
    const job = byName('Job', 'fastkvzip-finish');
    const wait = job.spec.template.spec.initContainers[0].args.join('\n');
    expect(wait).toContain(`grep -l '"complete": true' /work/parts/part-*/manifest.json`);
    expect(wait).toContain('"$PARTS"');
    const run = job.spec.template.spec.containers[0].args.join('\n');
    expect(run).toMatch(/merge-features \/work\/parts\/part-\* --out \/work\/features --verify[\s\S]*train --features \/work\/features --out \/work\/train --gpus all[\s\S]*export --gates \/work\/train/);
  });

  it('the HF token comes from a Secret, never from a value in a manifest', () => {
    const text = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).map((f) => readFileSync(path.join(DIR, f), 'utf8')).join('\n');
    expect(text).not.toMatch(/hf_[A-Za-z0-9]{20,}/);
    expect(docs.some((d) => d.obj.kind === 'Secret')).toBe(false);
    for (const name of ['fastkvzip-extract', 'fastkvzip-finish']) {
      const env = byName('Job', name).spec.template.spec.containers[0].env;
      const token = env.find((e: any) => e.name === 'HF_TOKEN');
      expect(token.value).toBeUndefined();
      expect(token.valueFrom.secretKeyRef).toEqual({ name: 'hf-token', key: 'token', optional: true });
    }
  });
});
