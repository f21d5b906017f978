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

/* The config c as a JSON object (the caller deletes it; NULL when out of memory): one member per
 * field of the config table (models.h), in table order — enums by name, the seed as a decimal string
 * (doubles lose bits above 2^53), everything else a number. */
static cJSON *config_json(const nf_config *c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    for (int32_t i = 0; i < nf_config_num_fields(); i++) {
        const nf_config_field *fd = nf_config_field_at(i);
        cJSON *v;
        if (fd->kind == NF_FIELD_ENUM) v = cJSON_AddStringToObject(j, fd->name, nf_enum_name(fd->enum_kind, nf_config_get_enum(c, fd)));
        else if (fd->kind == NF_FIELD_U64) {
            char u[32];
            snprintf(u, sizeof u, "%llu", (unsigned long long)nf_config_get_u64(c, fd));
            v = cJSON_AddStringToObject(j, fd->name, u);
        } else v = cJSON_AddNumberToObject(j, fd->name, nf_config_get_number(c, fd));
        if (!v) {
            cJSON_Delete(j);
            return NULL;
        }
    }
    return j;
}

/* Read the config object j of the checkpoint at path (named in reasons) into *c, walking the config
 * table: a required field must be present, an optional one (added later) is 0 when absent; ints must
 * be integral int32 values, enums known names, the seed a decimal string. NF_ERR_FORMAT otherwise. */
static nf_status config_from_json(const cJSON *j, nf_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    for (int32_t i = 0; i < nf_config_num_fields(); i++) {
        const nf_config_field *fd = nf_config_field_at(i);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, fd->name);
        if (!v && !fd->required) continue; /* absent in older checkpoints, where it was 0 */
        switch (fd->kind) {
        case NF_FIELD_INT:
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT32_MIN && v->valuedouble <= INT32_MAX) ||
                v->valuedouble != (double)(int32_t)v->valuedouble) /* range first: the cast of 1e100 is undefined */
                return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is %s", path, fd->name,
                               fd->required ? "missing or not an integer" : "not an integer");
            nf_config_set_int(c, fd, (int32_t)v->valuedouble);
            break;
        case NF_FIELD_ENUM: {
            int e = cJSON_IsString(v) ? nf_enum_from_name(fd->enum_kind, v->valuestring) : -1;
            if (e < 0) return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is missing or unknown", path, fd->name);
            nf_config_set_int(c, fd, e);
            break;
        }
        case NF_FIELD_DOUBLE:
            if (!cJSON_IsNumber(v))
                return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is %s", path, fd->name,
                               fd->required ? "missing" : "not a number");
            nf_config_set_double(c, fd, v->valuedouble);
            break;
        default:
            if (!cJSON_IsString(v)) return nf_fail(NF_ERR_FORMAT, "%s: config field '%s' is missing", path, fd->name);
            nf_config_set_u64(c, fd, strtoull(v->valuestring, NULL, 10));
            break;
        }
    }
    return NF_OK;
}

/* 1 if name ends in suffix. */
static int ends_with(const char *name, const char *suffix) {
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* 1 if v[0..count) holds each of the integers base … base + count − 1 once; -1 out of memory. */
static int is_permutation(const nf_real *v, int64_t count, int64_t base) {
    unsigned char *seen = nf_xcalloc((size_t)count, 1);
    if (!seen) return -1;
    int ok = 1;
    for (int64_t k = 0; k < count && ok; k++) {
        nf_real u = v[k] - (nf_real)base; /* exact for the small integers in question */
        ok = u >= 0 && u < (nf_real)count && u == (nf_real)(int64_t)u && !seen[(int64_t)u];
        if (ok) seen[(int64_t)u] = 1;
    }
    free(seen);
    return ok;
}

/* The state tensors (buffers) that layers index with or divide by must hold what the layer itself
 * would have written: "perm" (linear.c, permute.c) a permutation of 0..count−1, "degree" (a MADE's
 * input degrees, made.c) a permutation of 1..count, "sign" (linear.c LU) ±1, "running_var"
 * (batchnorm.c) and "std" (standardize.c) > 0, "initialized" (actnorm.c) 0 or 1. A checkpoint whose
 * values are finite but break these would index out of bounds, divide by zero or (degrees) break the
 * autoregressive mask, so that the log-density is silently wrong; NF_ERR_FORMAT naming path and the
 * tensor. */
static nf_status check_state(const nf_tensor_info *t, const nf_real *v, const char *path) {
    if (t->kind != NF_TENSOR_BUFFER) return NF_OK;
    int ok = 1;
    if (ends_with(t->name, ".perm") || ends_with(t->name, ".degree")) {
        ok = is_permutation(v, t->count, ends_with(t->name, ".degree"));
        if (ok < 0) return nf_fail(NF_ERR_NOMEM, "out of memory");
    } else if (ends_with(t->name, ".sign")) {
        for (int64_t k = 0; k < t->count && ok; k++) ok = v[k] == 1 || v[k] == -1;
    } else if (ends_with(t->name, ".running_var") || ends_with(t->name, ".std")) {
        for (int64_t k = 0; k < t->count && ok; k++) ok = v[k] > 0;
    } else if (ends_with(t->name, ".initialized")) {
        for (int64_t k = 0; k < t->count && ok; k++) ok = v[k] == 0 || v[k] == 1;
    }
    return ok ? NF_OK : nf_fail(NF_ERR_FORMAT, "%s: state tensor '%s' holds values its layer never writes", path, t->name);
}

/* cJSON_ParseWithLength that tells out-of-memory from malformed text, which cJSON reports alike (NULL):
 * a failed parse is retried once (a passing shortage is survived), and when it fails again a probe
 * allocation of twice the text's size decides: NF_ERR_NOMEM if even that fails, NF_ERR_FORMAT (no
 * reason set: the caller names the file) otherwise. *out: the tree (the caller deletes it) or NULL. */
static nf_status parse_json(const char *s, size_t n, cJSON **out) {
    for (int attempt = 0; attempt < 2; attempt++)
        if ((*out = cJSON_ParseWithLength(s, n))) return NF_OK;
    void *probe = malloc(2 * n + 4096);
    if (!probe) return nf_fail(NF_ERR_NOMEM, "out of memory parsing a checkpoint header of %zu bytes", n);
    free(probe);
    return NF_ERR_FORMAT;
}

/* Save f's config, layer kinds and tensors to path (nf_ckpt_save without optimiser state). */
nf_status nf_flow_save(const nf_flow *f, const char *path) { return nf_ckpt_save(f, path, NULL, NULL, NULL, NULL); }

/* See io.h: write f (borrowed) as a safetensors checkpoint to path, atomically (removing stale
 * temporaries of dead runs first); om/ov/ol (nparams each, may be NULL) and trainer_json are borrowed. */
nf_status nf_ckpt_save(const nf_flow *f, const char *path, const nf_real *om, const nf_real *ov, const nf_real *ol,
                       const char *trainer_json) {
    if (!(om && ov)) ol = NULL; /* the iterate is optimiser state: only beside the moments */
    int32_t ntensors = nf_flow_num_tensors(f);
    int64_t nparams = nf_flow_num_params(f);
    /* nf_flow_load refuses non-finite values: never write a checkpoint that would not load (the file at
     * path, if any, stays as it was) */
    for (int32_t i = 0; i < ntensors; i++) {
        const nf_real *v = nf_flow_tensor_cdata(f, i);
        for (int64_t k = 0; k < nf_flow_tensor(f, i)->count; k++)
            if (!isfinite(v[k])) return nf_fail(NF_ERR_NUMERIC, "%s: not saved: tensor '%s' holds a non-finite value", path, nf_flow_tensor(f, i)->name);
    }
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
    if (ol) crc = crc32(crc, (const Bytef *)ol, (uInt)(sizeof(nf_real) * (size_t)nparams));
    /* every cJSON call below can fail for want of memory: `built` records it, and a header missing a
     * member is never written (it would be a checkpoint that does not load) */
    int built = 1;
    for (int32_t k = 0; k < nf_flow_num_layers(f); k++) built &= cJSON_AddItemToArray(kinds, cJSON_CreateString(nf_flow_layer_name(f, k))) != 0;
    cfgs = cJSON_PrintUnformatted(cfg);
    kinds_s = cJSON_PrintUnformatted(kinds);
    char crcs[16], ver[16];
    snprintf(crcs, sizeof crcs, "%08lx", (unsigned long)crc);
    snprintf(ver, sizeof ver, "%d", NFLOW_CKPT_VERSION);
    built &= cJSON_AddStringToObject(meta, "format", "nflow") != NULL;
    built &= cJSON_AddStringToObject(meta, "format_version", ver) != NULL;
    built &= cJSON_AddStringToObject(meta, "nflow_version", NFLOW_VERSION) != NULL;
    built &= cJSON_AddStringToObject(meta, "config", cfgs ? cfgs : "") != NULL;
    built &= cJSON_AddStringToObject(meta, "layers", kinds_s ? kinds_s : "") != NULL;
    built &= cJSON_AddStringToObject(meta, "data_crc32", crcs) != NULL;
    if (trainer_json) built &= cJSON_AddStringToObject(meta, "trainer", trainer_json) != NULL;
    if (nf_flow_columns(f)) built &= cJSON_AddStringToObject(meta, "columns", nf_flow_columns(f)) != NULL;
    if (cJSON_AddItemToObject(h, "__metadata__", meta)) meta = NULL;
    else built = 0;
    uint64_t off = 0;
    int32_t nent = ntensors + (om && ov ? 2 : 0) + (ol ? 1 : 0);
    for (int32_t i = 0; i < nent && built; i++) {
        const nf_tensor_info *t = i < ntensors ? nf_flow_tensor(f, i) : NULL;
        uint64_t bytes = sizeof(nf_real) * (uint64_t)(t ? t->count : nparams);
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        built = e && shape && offs && cJSON_AddStringToObject(e, "dtype", DTYPE_NAME) != NULL;
        for (int32_t d = 0; d < (t ? t->ndim : 1) && built; d++)
            built = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)(t ? t->shape[d] : nparams))) != 0;
        built = built && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off)) &&
                cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        if (built && cJSON_AddItemToObject(e, "shape", shape)) shape = NULL;
        else built = 0;
        if (built && cJSON_AddItemToObject(e, "data_offsets", offs)) offs = NULL;
        else built = 0;
        const char *name = t ? t->name : i == ntensors ? "optimizer.adam_m" : i == ntensors + 1 ? "optimizer.adam_v" : "optimizer.live_params";
        if (built && cJSON_AddItemToObject(h, name, e)) e = NULL;
        else built = 0;
        cJSON_Delete(e), cJSON_Delete(shape), cJSON_Delete(offs);
        off += bytes;
    }
    hs = built ? cJSON_PrintUnformatted(h) : NULL;
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
    if (ol && ok) ok = fwrite(ol, sizeof(nf_real), (size_t)nparams, fp) == (size_t)nparams;
    st = nf_commit_temp(fp, tmp, path, ok);
done:
    cJSON_Delete(h), cJSON_Delete(meta), cJSON_Delete(cfg), cJSON_Delete(kinds);
    free(hs), free(cfgs), free(kinds_s);
    return st;
}

/* Read the checkpoint at path (exactly that file, never a temporary) into a new flow *out (the
 * caller frees it); *out stays NULL on failure: NF_ERR_IO, or NF_ERR_FORMAT naming what is wrong. */
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
    if ((st = parse_json((const char *)buf + 8, (size_t)hl, &h)) == NF_ERR_NOMEM) goto done;
    st = NF_OK;
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
    cJSON *cj = NULL;
    if (cJSON_IsString(cfgs) && (st = parse_json(cfgs->valuestring, strlen(cfgs->valuestring), &cj)) == NF_ERR_NOMEM) goto done;
    nf_config cfg;
    st = cj ? config_from_json(cj, &cfg, path) : nf_fail(NF_ERR_FORMAT, "%s: the config metadata is missing or not JSON", path);
    cJSON_Delete(cj);
    if (st) goto done;
    const unsigned char *data = buf + 8 + hl;
    uint64_t dlen = len - 8 - hl;
    if ((st = nf_flow_create_within(&cfg, (int64_t)(dlen / 4), &f))) { /* 4: the smallest dtype, F32 */
        char why[512]; /* a copy: nf_fail writes the buffer nf_last_error() points into */
        snprintf(why, sizeof why, "%s", nf_last_error());
        st = nf_fail(st, "%s: bad model config: %s", path, why);
        goto done;
    }
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
    for (int32_t i = 0; i < nf_flow_num_tensors(f); i++)
        if ((st = check_state(nf_flow_tensor(f, i), nf_flow_tensor_cdata(f, i), path))) goto done;
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(meta, "columns"); /* optional: a table's column names */
    if (cols && (!cJSON_IsString(cols) || (st = nf_flow_set_columns(f, cols->valuestring)))) {
        char why[512]; /* a copy: nf_fail writes the buffer nf_last_error() points into */
        snprintf(why, sizeof why, "%s", st == NF_ERR_INVALID ? nf_last_error() : "not a string");
        st = st == NF_ERR_NOMEM ? st : nf_fail(NF_ERR_FORMAT, "%s: the column names metadata: %s", path, why);
        goto done;
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

/* See io.h: copy the checkpoint's Adam moments into m and v (nparams each, caller's), its iterate into
 * live (if not NULL) and its "trainer" metadata into *trainer_json (malloc'ed, the caller frees; NULL on
 * failure). */
nf_status nf_ckpt_read_trainer(const char *path, nf_real *m, nf_real *v, nf_real *live, int64_t nparams, char **trainer_json) {
    *trainer_json = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    nf_status st = nf_read_file(path, &buf, &len);
    if (st) return st;
    uint64_t hl = 0;
    for (int b = 0; b < 8 && len >= 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
    cJSON *h = NULL;
    if (len >= 8 && hl <= len - 8 && parse_json((const char *)buf + 8, (size_t)hl, &h) == NF_ERR_NOMEM) {
        free(buf);
        return NF_ERR_NOMEM;
    }
    const cJSON *meta = h ? cJSON_GetObjectItemCaseSensitive(h, "__metadata__") : NULL;
    const cJSON *tr = meta ? cJSON_GetObjectItemCaseSensitive(meta, "trainer") : NULL;
    if (!cJSON_IsString(tr)) st = nf_fail(NF_ERR_FORMAT, "%s: no training state (not saved by nflow train, or a plain model checkpoint)", path);
    const unsigned char *data = buf + 8 + hl;
    static const char *const names[3] = {"optimizer.adam_m", "optimizer.adam_v", "optimizer.live_params"};
    nf_real *const dst[3] = {m, v, live};
    for (int k = 0; k < (live ? 3 : 2) && !st; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, names[k]);
        const cJSON *of = e ? cJSON_GetObjectItemCaseSensitive(e, "data_offsets") : NULL;
        const cJSON *dt = e ? cJSON_GetObjectItemCaseSensitive(e, "dtype") : NULL;
        double b0 = cJSON_GetArraySize(of) == 2 ? cJSON_GetArrayItem(of, 0)->valuedouble : -1;
        double b1 = cJSON_GetArraySize(of) == 2 ? cJSON_GetArrayItem(of, 1)->valuedouble : -1;
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, DTYPE_NAME) != 0 || b0 < 0 ||
            b1 - b0 != (double)(sizeof(nf_real) * (size_t)nparams) || b1 > (double)(len - 8 - hl))
            st = nf_fail(NF_ERR_FORMAT, "%s: optimiser state%s missing or of the wrong size for this model", path,
                         k == 2 ? " (the parameters beside their average)" : "");
        else
            memcpy(dst[k], data + (size_t)b0, sizeof(nf_real) * (size_t)nparams);
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
