#!/usr/bin/python3
"""Write the seed corpora of tests/fuzz/corpus/ (except the checkpoints, which nflow itself writes:
see make_seeds.sh). Small, valid or nearly valid inputs of every format; the fuzzer mutates from them.
Run from the repository root: /usr/bin/python3 tests/fuzz/make_seeds.py"""
import gzip, io, os, struct, zlib
from PIL import Image

C = "tests/fuzz/corpus"
def put(target, name, data):
    os.makedirs(f"{C}/{target}", exist_ok=True)
    with open(f"{C}/{target}/{name}", "wb") as f:
        f.write(data)

# CSV
put("csv", "plain", b"1,2\n3,4\n5,6\n")
put("csv", "header_crlf", b"x,y,z\r\n0.5,-1e3,2\r\n\r\n1.25,3,  4 \r\n")
put("csv", "one_column", b"v\n1\n2\n3\n")
put("csv", "ragged", b"1,2\n3\n")
put("csv", "nan", b"1,nan\n2,inf\n")
put("csv", "exp", b"1e308,1e-320\n-0,0x1p3\n")

# IDX: flags | [labels length u16 LE | labels] | images
def idx_images(n, h, w):
    return struct.pack(">IIII", 0x803, n, h, w) + bytes((i * 37) & 255 for i in range(n * h * w))
def idx_labels(n):
    return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
im, lb = idx_images(2, 4, 4), idx_labels(2)
put("idx", "raw", b"\x00" + im)
put("idx", "gz", b"\x01" + im)
put("idx", "raw_labels", b"\x02" + struct.pack("<H", len(lb)) + lb + im)
put("idx", "gz_labels_gz", b"\x07" + struct.pack("<H", len(lb)) + lb + im)
put("idx", "pre_gzipped", b"\x00" + gzip.compress(im))
put("idx", "one_image", b"\x00" + idx_images(1, 2, 3))

# CIFAR-10: flag (odd: two files) | records of 1 label + 3072 pixels
rec = lambda lab: bytes([lab]) + bytes((i * 13) & 255 for i in range(3072))
put("cifar", "one", b"\x00" + rec(3))
put("cifar", "two_files", b"\x01" + rec(1) + rec(9))

# folder: flags (bits 0-1 name .png .PNG .jpg .jpeg; 2-3 channels 0 1 3 0; bit 4 class folder) | size-1 | file
def png(mode, size, **kw):
    b = io.BytesIO()
    img = Image.new(mode, size)
    img.putdata([tuple((x * 50 + k * 30) % 256 for k in range(len(mode))) if len(mode) > 1 else (x * 50) % 256
                 for x in range(size[0] * size[1])])
    img.save(b, **kw)
    return b.getvalue()
put("folder", "png_rgb", bytes([0x00, 3]) + png("RGB", (5, 3), format="PNG"))
put("folder", "png_gray_class", bytes([0x14, 1]) + png("L", (4, 4), format="PNG"))
put("folder", "png_rgba_interlaced", bytes([0x0d, 7]) + png("RGBA", (6, 9), format="PNG", interlace=1))
pal = Image.new("P", (4, 2)); pal.putpalette([i % 256 for i in range(768)]); pal.putdata([0, 1, 2, 3, 4, 5, 6, 7])
b = io.BytesIO(); pal.save(b, format="PNG"); put("folder", "png_palette", bytes([0x08, 2]) + b.getvalue())
b = io.BytesIO(); Image.new("I;16", (3, 3)).save(b, format="PNG"); put("folder", "png_16bit", bytes([0x04, 2]) + b.getvalue())
put("folder", "jpg_rgb", bytes([0x02, 3]) + png("RGB", (8, 8), format="JPEG", quality=50))
put("folder", "jpeg_gray_class", bytes([0x17, 2]) + png("L", (9, 5), format="JPEG"))
put("folder", "jpg_progressive", bytes([0x0a, 4]) + png("RGB", (16, 8), format="JPEG", progressive=True))
put("folder", "jpg_cmyk", bytes([0x02, 1]) + png("CMYK", (4, 4), format="JPEG"))

# options: command | source and model | NUL-separated arguments
def opt(cmd, sm, *args):
    return bytes([cmd, sm]) + b"\0".join(a.encode() for a in args)
put("options", "train_toy", opt(0, 0, "--model", "realnvp", "--data", "moons", "--steps", "3", "--batch", "8", "-o", "m.ckpt"))
put("options", "train_glow_img", opt(0, 2 | (2 << 2), "--model", "glow", "--data", "x.idx", "--levels", "1", "--depth", "2", "--coupling", "additive", "--scale", "sigmoid"))
put("options", "train_dir", opt(0, 3, "--model=nice", "--data=d", "--image-size", "8", "--channels", "2", "--test-frac", "0.25", "--test-data", "t"))
put("options", "eval", opt(1, 1, "--model", "m.ckpt", "--data", "x.csv", "-o", "lp.csv", "--threads", "1"))
put("options", "sample", opt(2, 0, "-n", "10", "--temperature", "0.7", "--model", "m.ckpt", "--seed", "9223372036854775807"))
put("options", "manipulate", opt(8, 2, "--images", "1,2,3", "--strengths", "-1,0.5,1e2", "--class-a", "1", "--class-b", "2", "--per-class", "5"))
put("options", "interp", opt(7, 2, "--from", "0", "--to", "3", "--frames", "4", "--bits", "5"))
put("options", "help", opt(5, 0, "--help"))
put("options", "bad", opt(0, 0, "--lr", "nan", "--unknown", "-x", "extra"))
