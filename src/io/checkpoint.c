/* ckpt.c — checkpoints in the safetensors format:
 *   u64 (little-endian) N | N bytes of JSON header (space-padded to a multiple of 8) | tensor data
 * The header maps every tensor name to {"dtype", "shape", "data_offsets"} and carries "__metadata__"
 * (string → string): format "nflow", format_version, the model config as JSON, the layer kinds, and
 * the CRC-32 of the data section. Any safetensors reader (Python's safetensors, for one) can open it. */
#include "core/files.h"
#include "io/io.h"
#include "models/models.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <zlib.h>

#define DTYPE_NAME (sizeof(nf_real) == 4 ? "F32" : "F64")

static cJSON *config_json(const nf_config *c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "model", nf_enum_name("model", (int)c->model));
    cJSON_AddNumberToObject(j, "dim", c->dim);
    cJSON_AddNumberToObject(j, "depth", c->depth);
    cJSON_AddNumberToObject(j, "hidden", c->hidden);
    cJSON_AddNumberToObject(j, "layers", c->layers);
    cJSON_AddStringToObject(j, "activation", nf_enum_name("activation", (int)c->act));
    cJSON_AddStringToObject(j, "coupling", nf_enum_name("coupling", (int)c->coupling));
    cJSON_AddStringToObject(j, "scale", nf_enum_name("scale", (int)c->scale));
    cJSON_AddStringToObject(j, "partition", nf_enum_name("partition", (int)c->partition));
    cJSON_AddStringToObject(j, "perm", nf_enum_name("perm", (int)c->perm));
    cJSON_AddNumberToObject(j, "lu", c->lu);
    cJSON_AddNumberToObject(j, "batchnorm", c->batchnorm);
    cJSON_AddNumberToObject(j, "actnorm", c->actnorm);
    cJSON_AddStringToObject(j, "prior", nf_enum_name("prior", (int)c->prior));
    cJSON_AddNumberToObject(j, "standardize", c->standardize);
    cJSON_AddNumberToObject(j, "init_std", c->init_std);
    cJSON_AddNumberToObject(j, "channels", c->channels);
    cJSON_AddNumberToObject(j, "height", c->height);
    cJSON_AddNumberToObject(j, "width", c->width);
    cJSON_AddNumberToObject(j, "levels", c->levels);
    cJSON_AddNumberToObject(j, "blocks", c->blocks);
    cJSON_AddNumberToObject(j, "logit_alpha", c->logit_alpha);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    return j;
}

/* Read config fields back; every field is required but blocks and logit_alpha. */
static nf_status config_from_json(const cJSON *j, nf_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    static const char *ints[] = {"dim", "depth", "hidden", "layers", "lu", "batchnorm", "actnorm", "standardize"};
    int32_t *dst[] = {&c->dim, &c->depth, &c->hidden, &c->layers, &c->lu, &c->batchnorm, &c->actnorm, &c->standardize};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ints[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int32_t)v->valuedouble)
            return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is missing or not an integer", path, ints[i]);
        *dst[i] = (int32_t)v->valuedouble;
    }
    static const char *enums[][2] = {{"model", "model"}, {"activation", "activation"}, {"coupling", "coupling"},
                                     {"scale", "scale"}, {"partition", "partition"}, {"perm", "perm"}, {"prior", "prior"}};
    int *edst[] = {(int *)&c->model, (int *)&c->act, (int *)&c->coupling, (int *)&c->scale, (int *)&c->partition,
                   (int *)&c->perm, (int *)&c->prior};
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, enums[i][0]);
        int e = cJSON_IsString(v) ? nf_enum_from_name(enums[i][1], v->valuestring) : -1;
        if (e < 0) return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is missing or unknown", path, enums[i][0]);
        *edst[i] = e;
    }
    static const char *img[] = {"channels", "height", "width", "levels"};
    int32_t *idst[] = {&c->channels, &c->height, &c->width, &c->levels};
    for (size_t i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, img[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int32_t)v->valuedouble)
            return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is missing or not an integer", path, img[i]);
        *idst[i] = (int32_t)v->valuedouble;
    }
    /* added after the first image models: absent in older checkpoints, where they were 0 */
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(j, "blocks"), *la = cJSON_GetObjectItemCaseSensitive(j, "logit_alpha");
    if (bl && (!cJSON_IsNumber(bl) || bl->valuedouble != (double)(int32_t)bl->valuedouble))
        return nf_fail(NF_ERR_FORMAT, "%s: config field 'blocks' is not an integer", path);
    if (la && !cJSON_IsNumber(la)) return nf_fail(NF_ERR_FORMAT, "%s: config field 'logit_alpha' is not a number", path);
    c->blocks = bl ? (int32_t)bl->valuedouble : 0;
    c->logit_alpha = la ? la->valuedouble : 0;
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(j, "init_std");
    if (!cJSON_IsNumber(is)) return nf_fail(NF_ERR_FORMAT, "%s: config field 'init_std' is missing", path);
    c->init_std = is->valuedouble;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (!cJSON_IsString(s)) return nf_fail(NF_ERR_FORMAT, "%s: config field 'seed' is missing", path);
    c->seed = strtoull(s->valuestring, NULL, 10);
    return NF_OK;
}

nf_status nf_flow_save(const nf_flow *f, const char *path) { return nf_ckpt_save(f, path, NULL, NULL, NULL); }

nf_status nf_ckpt_save(const nf_flow *f, const char *path, const nf_real *om, const nf_real *ov, const char *trainer_json) {
    int32_t ntensors = nf_flow_num_tensors(f);
    int64_t nparams = nf_flow_num_params(f);
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *cfg = config_json(nf_flow_config(f));
    cJSON *kinds = cJSON_CreateArray();
    nf_status st = NF_OK;
    char *hs = NULL, *cfgs = NULL, *kinds_s = NULL;
    if (!h || !meta || !cfg || !kinds) {
        st = nf_fail(NF_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* CRC of the whole data section: the tensors in file order, then the optimiser moments */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int32_t i = 0; i < ntensors; i++)
        crc = crc32(crc, (const Bytef *)nf_flow_tensor_cdata(f, i), (uInt)(sizeof(nf_real) * (size_t)nf_flow_tensor(f, i)->count));
    if (om && ov) {
        crc = crc32(crc, (const Bytef *)om, (uInt)(sizeof(nf_real) * (size_t)nparams));
        crc = crc32(crc, (const Bytef *)ov, (uInt)(sizeof(nf_real) * (size_t)nparams));
    }
    for (int32_t k = 0; k < nf_flow_num_layers(f); k++) cJSON_AddItemToArray(kinds, cJSON_CreateString(nf_flow_layer_name(f, k)));
    cfgs = cJSON_PrintUnformatted(cfg);
    kinds_s = cJSON_PrintUnformatted(kinds);
    char crcs[16], ver[16];
    snprintf(crcs, sizeof crcs, "%08lx", (unsigned long)crc);
    snprintf(ver, sizeof ver, "%d", NFLOW_CKPT_VERSION);
    cJSON_AddStringToObject(meta, "format", "nflow");
    cJSON_AddStringToObject(meta, "format_version", ver);
    cJSON_AddStringToObject(meta, "nflow_version", NFLOW_VERSION);
    cJSON_AddStringToObject(meta, "config", cfgs ? cfgs : "");
    cJSON_AddStringToObject(meta, "layers", kinds_s ? kinds_s : "");
    cJSON_AddStringToObject(meta, "data_crc32", crcs);
    if (trainer_json) cJSON_AddStringToObject(meta, "trainer", trainer_json);
    cJSON_AddItemToObject(h, "__metadata__", meta);
    meta = NULL;
    uint64_t off = 0;
    for (int32_t i = 0; i < ntensors; i++) {
        const nf_tensor_info *t = nf_flow_tensor(f, i);
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(e, "dtype", DTYPE_NAME);
        for (int32_t d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        uint64_t bytes = sizeof(nf_real) * (uint64_t)t->count;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(h, t->name, e);
        off += bytes;
    }
    for (int k = 0; om && ov && k < 2; k++) {
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        uint64_t bytes = sizeof(nf_real) * (uint64_t)nparams;
        cJSON_AddStringToObject(e, "dtype", DTYPE_NAME);
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)nparams));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(h, k ? "optimizer.adam_v" : "optimizer.adam_m", e);
        off += bytes;
    }
    hs = cJSON_PrintUnformatted(h);
    if (!hs || !cfgs || !kinds_s) {
        st = nf_fail(NF_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t hl = strlen(hs), padded = (hl + 7) / 8 * 8;
    nf_remove_stale_temps(path); /* what a killed earlier run left: "<path>.tmp.<dead pid>" */
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) {
        st = NF_ERR_IO;
        goto done;
    }
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)(((uint64_t)padded >> (8 * b)) & 0xff);
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hs, 1, hl, fp) == hl;
    for (size_t p = hl; p < padded && ok; p++) ok = fputc(' ', fp) != EOF;
    for (int32_t i = 0; i < ntensors && ok; i++) {
        size_t cnt = (size_t)nf_flow_tensor(f, i)->count;
        ok = fwrite(nf_flow_tensor_cdata(f, i), sizeof(nf_real), cnt, fp) == cnt;
    }
    if (om && ov && ok)
        ok = fwrite(om, sizeof(nf_real), (size_t)nparams, fp) == (size_t)nparams &&
             fwrite(ov, sizeof(nf_real), (size_t)nparams, fp) == (size_t)nparams;
    st = nf_commit_temp(fp, tmp, path, ok);
done:
    cJSON_Delete(h), cJSON_Delete(meta), cJSON_Delete(cfg), cJSON_Delete(kinds);
    free(hs), free(cfgs), free(kinds_s);
    return st;
}

nf_status nf_flow_load(const char *path, nf_flow **out) {
    *out = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    nf_status st = nf_read_file(path, &buf, &len);
    if (st) return st;
    cJSON *h = NULL;
    nf_flow *f = NULL;
    uint64_t hl = 0;
    if (len < 8) {
        st = nf_fail(NF_ERR_FORMAT, "%s: not an nflow checkpoint (%zu bytes, too short)", path, len);
        goto done;
    }
    for (int b = 0; b < 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
    if (hl > len - 8) {
        st = nf_fail(NF_ERR_FORMAT, "%s: truncated or not a checkpoint (header of %llu bytes, file has %zu)", path, (unsigned long long)hl, len);
        goto done;
    }
    h = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl);
    const cJSON *meta = h ? cJSON_GetObjectItemCaseSensitive(h, "__metadata__") : NULL;
    const cJSON *fmt = meta ? cJSON_GetObjectItemCaseSensitive(meta, "format") : NULL;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "nflow") != 0) {
        st = nf_fail(NF_ERR_FORMAT, "%s: not an nflow checkpoint (no safetensors header with format \"nflow\")", path);
        goto done;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(meta, "format_version");
    if (!cJSON_IsString(ver) || atoi(ver->valuestring) != NFLOW_CKPT_VERSION) {
        st = nf_fail(NF_ERR_FORMAT, "%s: checkpoint format version %s, this nflow reads version %d", path,
                     cJSON_IsString(ver) ? ver->valuestring : "?", NFLOW_CKPT_VERSION);
        goto done;
    }
    const cJSON *cfgs = cJSON_GetObjectItemCaseSensitive(meta, "config");
    cJSON *cj = cJSON_IsString(cfgs) ? cJSON_Parse(cfgs->valuestring) : NULL;
    nf_config cfg;
    st = cj ? config_from_json(cj, &cfg, path) : nf_fail(NF_ERR_FORMAT, "%s: the config metadata is missing or not JSON", path);
    cJSON_Delete(cj);
    if (st) goto done;
    if ((st = nf_flow_create(&cfg, &f))) {
        st = nf_fail(st, "%s: bad model config: %s", path, nf_last_error());
        goto done;
    }
    const unsigned char *data = buf + 8 + hl;
    uint64_t dlen = len - 8 - hl;
    uLong crc = crc32(0L, Z_NULL, 0);
    int ntens = 0;
    for (const cJSON *e = h->child; e; e = e->next)
        ntens += strcmp(e->string, "__metadata__") != 0 && strncmp(e->string, "optimizer.", 10) != 0;
    if (ntens != nf_flow_num_tensors(f)) {
        st = nf_fail(NF_ERR_FORMAT, "%s: %d tensors, the model of its config has %d", path, ntens, (int)nf_flow_num_tensors(f));
        goto done;
    }
    for (int32_t i = 0; i < nf_flow_num_tensors(f); i++) {
        const nf_tensor_info *t = nf_flow_tensor(f, i);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, t->name);
        const cJSON *dt = e ? cJSON_GetObjectItemCaseSensitive(e, "dtype") : NULL;
        const cJSON *sh = e ? cJSON_GetObjectItemCaseSensitive(e, "shape") : NULL;
        const cJSON *of = e ? cJSON_GetObjectItemCaseSensitive(e, "data_offsets") : NULL;
        if (!e || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
            st = nf_fail(NF_ERR_FORMAT, "%s: tensor '%s' is missing or malformed", path, t->name);
            goto done;
        }
        size_t esz = strcmp(dt->valuestring, "F32") == 0 ? 4 : strcmp(dt->valuestring, "F64") == 0 ? 8 : 0;
        int shape_ok = esz && cJSON_GetArraySize(sh) == t->ndim;
        for (int32_t d = 0; d < t->ndim && shape_ok; d++)
            shape_ok = cJSON_GetArrayItem(sh, d)->valuedouble == (double)t->shape[d];
        double b0 = cJSON_GetArrayItem(of, 0)->valuedouble, b1 = cJSON_GetArrayItem(of, 1)->valuedouble;
        if (!shape_ok) {
            st = nf_fail(NF_ERR_FORMAT, "%s: tensor '%s' has the wrong dtype or shape for this model", path, t->name);
            goto done;
        }
        if (!(b0 >= 0 && b1 >= b0 && b1 <= (double)dlen && b1 - b0 == (double)(esz * (size_t)t->count))) {
            st = nf_fail(NF_ERR_FORMAT, "%s: tensor '%s' lies outside the file (truncated?)", path, t->name);
            goto done;
        }
        const unsigned char *src = data + (size_t)b0;
        nf_real *dst = nf_flow_tensor_data(f, i);
        for (int64_t k = 0; k < t->count; k++) {
            if (esz == 4) {
                float v;
                memcpy(&v, src + 4 * k, 4);
                dst[k] = (nf_real)v;
            } else {
                double v;
                memcpy(&v, src + 8 * k, 8);
                dst[k] = (nf_real)v;
            }
            if (!isfinite(dst[k])) {
                st = nf_fail(NF_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value", path, t->name);
                goto done;
            }
        }
    }
    crc = crc32(crc, data, (uInt)dlen);
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(meta, "data_crc32");
    if (cJSON_IsString(cs)) {
        char mine[16];
        snprintf(mine, sizeof mine, "%08lx", (unsigned long)crc);
        if (strcmp(mine, cs->valuestring) != 0) {
            st = nf_fail(NF_ERR_FORMAT, "%s: checksum mismatch (data corrupted)", path);
            goto done;
        }
    }
done:
    cJSON_Delete(h);
    free(buf);
    if (st) nf_flow_free(f);
    else *out = f;
    return st;
}

nf_status nf_ckpt_read_trainer(const char *path, nf_real *m, nf_real *v, int64_t nparams, char **trainer_json) {
    *trainer_json = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    nf_status st = nf_read_file(path, &buf, &len);
    if (st) return st;
    uint64_t hl = 0;
    for (int b = 0; b < 8 && len >= 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
    cJSON *h = len >= 8 && hl <= len - 8 ? cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl) : NULL;
    const cJSON *meta = h ? cJSON_GetObjectItemCaseSensitive(h, "__metadata__") : NULL;
    const cJSON *tr = meta ? cJSON_GetObjectItemCaseSensitive(meta, "trainer") : NULL;
    if (!cJSON_IsString(tr)) st = nf_fail(NF_ERR_FORMAT, "%s: no training state (not saved by nflow train, or a plain model checkpoint)", path);
    const unsigned char *data = buf + 8 + hl;
    for (int k = 0; k < 2 && !st; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, k ? "optimizer.adam_v" : "optimizer.adam_m");
        const cJSON *of = e ? cJSON_GetObjectItemCaseSensitive(e, "data_offsets") : NULL;
        const cJSON *dt = e ? cJSON_GetObjectItemCaseSensitive(e, "dtype") : NULL;
        double b0 = cJSON_GetArraySize(of) == 2 ? cJSON_GetArrayItem(of, 0)->valuedouble : -1;
        double b1 = cJSON_GetArraySize(of) == 2 ? cJSON_GetArrayItem(of, 1)->valuedouble : -1;
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, DTYPE_NAME) != 0 || b0 < 0 ||
            b1 - b0 != (double)(sizeof(nf_real) * (size_t)nparams) || b1 > (double)(len - 8 - hl))
            st = nf_fail(NF_ERR_FORMAT, "%s: optimiser state missing or of the wrong size for this model", path);
        else
            memcpy(k ? v : m, data + (size_t)b0, sizeof(nf_real) * (size_t)nparams);
    }
    if (!st) {
        *trainer_json = malloc(strlen(tr->valuestring) + 1);
        if (!*trainer_json) st = nf_fail(NF_ERR_NOMEM, "out of memory");
        else strcpy(*trainer_json, tr->valuestring);
    }
    cJSON_Delete(h);
    free(buf);
    return st;
}
