// The connect() audit's parser, on lines as strace 6 prints them (no server needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConnects } from './lib/strace.mjs';

const SAMPLE = `
101 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
101 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
102 connect(7, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
102 <... connect resumed>) = 0
103 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16) = 0
104 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::6810:84e5", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)
105 connect(10, {sa_family=AF_UNSPEC, sa_data="\\0\\0\\0\\0"}, 16) = 0
106 connect(11, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
107 connect(12, {sa_family=AF_UNIX, sun_path=@"/tmp/.X11-unix/X0"}, 20) = 0
108 connect(13, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("140.82.112.3")}, 16) = 0
`;

test('connect() lines are sorted into loopback and not', () => {
  const connects = parseConnects(SAMPLE);
  assert.equal(connects.length, 9); // a resumed line is not a second call
  assert.deepEqual(
    connects.filter((c) => !c.local).map((c) => `${c.address}:${c.port}`),
    ['10.0.0.2:53', '2606:4700::6810:84e5:443', '140.82.112.3:443'],
  );
  assert.deepEqual(connects[1], {
    pid: 101, family: 'AF_INET', address: '127.0.0.1', port: 8080, local: true, line: connects[1].line,
  });
  assert.equal(connects[2].address, '::1');
  assert.equal(connects[6].address, '::ffff:127.0.0.1');
  assert.ok(connects[6].local);
  assert.equal(connects[7].address, '@"/tmp/.X11-unix/X0"');
});
