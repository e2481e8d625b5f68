// Words for engineers that must never reach the user outside a Details disclosure:
// the system's error codes, byte offsets, command-line flags.

/** What must never reach the user outside Details. */
export const ENGINE_ONLY: Array<[string, RegExp]> = [
  [
    'an error code',
    /\bE(?:NOSPC|IO|BUSY|NOENT|PERM|ACCES|ROFS|NXIO|NODEV|NOTCONN|NOMEM|INVAL|FBIG|DQUOT|PIPE|TIMEDOUT|EXIST|ISDIR|NOTDIR|MFILE|AGAIN|OPNOTSUPP|NOSYS|NOTTY)\b/,
  ],
  ['a byte offset', /\bbytes? \d/],
  ['a command-line flag', /(?:^|[\s(“"'`])--[a-z]/],
];
