# fdctl drives file descriptors for tests of a mount: one command per line on
# stdin, one reply per line on stdout ("ok", or "err ENAME" with the errno's
# name), so that a test can hold descriptors open across its steps and see
# exactly what each system call returned.
#
#   open NAME PATH FLAGS   FLAGS: comma-separated rdonly wronly rdwr creat trunc append excl
#   write NAME DATA        write DATA (the rest of the line) at the offset; "ok short N" if only N bytes were
#   fsync NAME
#   dup NAME NEW           NEW is a duplicate descriptor of NAME
#   close NAME
#   read NAME N            read up to N bytes (until EOF); reply "ok COUNT SHA256" of what was read
#   mmap NAME MAP FLAGS    map the whole file; FLAGS: shared|private, optionally ,write
#   mread MAP OFF LEN      bytes OFF..OFF+LEN of the mapping; reply as read's
#   mwrite MAP OFF DATA    write DATA into the mapping at OFF
#   msync MAP
#   munmap MAP
import errno
import hashlib
import mmap
import os
import sys

FLAGS = {'rdonly': os.O_RDONLY, 'wronly': os.O_WRONLY, 'rdwr': os.O_RDWR, 'creat': os.O_CREAT,
         'trunc': os.O_TRUNC, 'append': os.O_APPEND, 'excl': os.O_EXCL}
fds = {}
maps = {}


def run(words):
    op = words[0]
    if op == 'open':
        flags = 0
        for f in words[3].split(','):
            flags |= FLAGS[f]
        fds[words[1]] = os.open(words[2], flags, 0o644)
    elif op == 'write':
        data = words[2].encode() if len(words) > 2 else b''
        n = os.write(fds[words[1]], data)
        if n != len(data):
            return 'short %d' % n
    elif op == 'fsync':
        os.fsync(fds[words[1]])
    elif op == 'dup':
        fds[words[2]] = os.dup(fds[words[1]])
    elif op == 'close':
        os.close(fds.pop(words[1]))
    elif op == 'read':
        want, got = int(words[2]), b''
        while len(got) < want:
            b = os.read(fds[words[1]], min(want - len(got), 1 << 20))
            if not b:
                break
            got += b
        return '%d %s' % (len(got), hashlib.sha256(got).hexdigest())
    elif op == 'mmap':
        opts = words[3].split(',')
        flags = mmap.MAP_SHARED if opts[0] == 'shared' else mmap.MAP_PRIVATE
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if 'write' in opts else 0)
        maps[words[2]] = mmap.mmap(fds[words[1]], 0, flags=flags, prot=prot)
    elif op == 'mread':
        off, n = int(words[2]), int(words[3])
        got = maps[words[1]][off:off + n]
        return '%d %s' % (len(got), hashlib.sha256(got).hexdigest())
    elif op == 'mwrite':
        off, data = int(words[2]), words[3].encode()
        maps[words[1]][off:off + len(data)] = data
    elif op == 'msync':
        maps[words[1]].flush()
    elif op == 'munmap':
        maps.pop(words[1]).close()
    else:
        raise ValueError('unknown command ' + op)


for line in sys.stdin:
    n = {'write ': 2, 'mwrite ': 3}.get(line[:line.find(' ') + 1], -1)
    words = line.rstrip('\n').split(' ', n)
    try:
        reply = run(words)
        print('ok' if reply is None else 'ok ' + reply, flush=True)
    except OSError as e:
        print('err ' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
