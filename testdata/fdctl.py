# fdctl drives file descriptors for tests of a mount: one command per line on
# stdin, one reply per line on stdout ("ok", or "err ENAME" with the errno's
# name), so that a test can hold descriptors open across its steps and see
# exactly what each system call returned.
#
#   open NAME PATH FLAGS   FLAGS: comma-separated rdonly wronly rdwr creat trunc append excl
#   write NAME DATA        write DATA (the rest of the line) at the offset
#   fsync NAME
#   dup NAME NEW           NEW is a duplicate descriptor of NAME
#   close NAME
import errno
import os
import sys

FLAGS = {'rdonly': os.O_RDONLY, 'wronly': os.O_WRONLY, 'rdwr': os.O_RDWR, 'creat': os.O_CREAT,
         'trunc': os.O_TRUNC, 'append': os.O_APPEND, 'excl': os.O_EXCL}
fds = {}


def run(words):
    op = words[0]
    if op == 'open':
        flags = 0
        for f in words[3].split(','):
            flags |= FLAGS[f]
        fds[words[1]] = os.open(words[2], flags, 0o644)
    elif op == 'write':
        data = words[2].encode() if len(words) > 2 else b''
        if os.write(fds[words[1]], data) != len(data):
            raise OSError(errno.EIO, 'short write')
    elif op == 'fsync':
        os.fsync(fds[words[1]])
    elif op == 'dup':
        fds[words[2]] = os.dup(fds[words[1]])
    elif op == 'close':
        os.close(fds.pop(words[1]))
    else:
        raise ValueError('unknown command ' + op)


for line in sys.stdin:
    words = line.rstrip('\n').split(' ', 2 if line.startswith('write ') else -1)
    try:
        run(words)
        print('ok', flush=True)
    except OSError as e:
        print('err ' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
