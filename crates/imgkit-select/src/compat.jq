# jq 1.7 builtins that jaq lacks or spells differently. Loaded after jaq's definitions, so a
# definition here replaces jaq's of the same name and arity.

# jaq computes nan and infinite as 0/0 and 1/0, which are errors in jq; so are the definitions
# built on them.
def nan: jq_nan;
def infinite: jq_infinite;
def isnan: . < nan and nan < .;
def isinfinite: . == infinite or . == -infinite;
def isfinite: type == "number" and (isinfinite | not);
def isnormal: type == "number" and ((. == 0 or isnan or isinfinite) | not);
def finites: select(isfinite);
def normals: select(isnormal);
def logb:
    if . == 0.0 then -infinite
  elif isinfinite then infinite
  elif isnan then .
  else ilogb | . + 0.0 end;
def significand:
    if isinfinite or isnan then .
  elif . == 0.0 then 0.0
  else scalbln(.; ilogb | -1 * .) end;

def halt_error($code): halt_error_empty, halt($code);
def halt_error: halt_error(5);

# jq 1.7: `input` with no input left is the error "break" (what `try input catch .` yields).
def input: first(inputs, error("break"));

# jq 1.8: ordering values nested past 10,000 levels is an error (jq 1.7 overflows its stack).
def sort: _jq_comparable | _jaq_sort;
def unique: _jq_comparable | unique_by(.);

def have_decnum: true;
def have_literal_numbers: true;

def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def INDEX(stream; idx_expr): reduce stream as $row ({}; .[$row | idx_expr | tostring] |= $row);
def INDEX(idx_expr): INDEX(.[]; idx_expr);
def JOIN($idx; idx_expr): [.[] | [., $idx[idx_expr]]];
def JOIN($idx; stream; idx_expr): stream | [., $idx[idx_expr]];
def JOIN($idx; stream; idx_expr; join_expr): stream | [., $idx[idx_expr]] | join_expr;

def tostring: jq_tostring;
def tonumber: jq_tonumber;
def join($x): reduce .[] as $i (null; (if . == null then "" else . + $x end) +
  ($i | if . == null then "" elif type == "boolean" or type == "number" then tojson else . end)) // "";

def trimstr($x): ltrimstr($x) | rtrimstr($x);

def @csv:
  if type != "array" then error("\(type) (\(tojson)) cannot be csv-formatted, only an array can be")
  else map(
      if type == "string" then "\"" + (split("\"") | join("\"\"")) + "\""
      elif type == "number" then tojson
      elif type == "boolean" then tojson
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a csv row") end
    ) | join(",")
  end;
def @tsv:
  if type != "array" then error("\(type) (\(tojson)) cannot be tsv-formatted, only an array can be")
  else map(
      if type == "string" then split("\\") | join("\\\\") | split("\t") | join("\\t")
        | split("\n") | join("\\n") | split("\r") | join("\\r")
      elif type == "number" then tojson
      elif type == "boolean" then tojson
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a tsv row") end
    ) | join("\t")
  end;
def @text: tostring;
def @json: tojson;

def limit($n; f): if $n < 0 then error("limit doesn't support negative count") else _jaq_limit($n; f) end;
def skip($n; f): if $n < 0 then error("skip doesn't support negative count") else _jaq_skip($n; f) end;
def nth($n): .[$n];
def nth($n; f): if $n < 0 then error("nth doesn't support negative indices") else first(skip($n; f)) end;

def trim: if type == "string" then _jaq_trim else error("trim input must be a string") end;
def ltrim: if type == "string" then _jaq_ltrim else error("trim input must be a string") end;
def rtrim: if type == "string" then _jaq_rtrim else error("trim input must be a string") end;
def utf8bytelength:
  if type == "string" then _jaq_utf8bytelength
  else error("\(type) (\(tojson)) only strings have UTF-8 byte length") end;
def toboolean:
  if type == "boolean" then .
  elif . == "true" then true
  elif . == "false" then false
  else error("\(type) (\(tojson)) cannot be parsed as a boolean") end;
def flatten($d):
  if $d < 0 then error("flatten depth must not be negative")
  else reduce .[] as $i ([]; if $i | type == "array" and $d > 0 then . + ($i | flatten($d - 1)) else . + [$i] end) end;
def flatten: flatten(1e9);
def _strindices($i):
  if type != "string" then error("\(type) (\(tojson)) cannot be searched, as it is not a string")
  elif ($i | type) != "string" then error("\($i | type) (\($i | tojson)) is not a string")
  else _jaq_indices($i) end;

def from_entries: reduce .[] as $x ({};
  . + { ($x | if .key == null then .k // .name // .Name // .K // .Key else .key end
            | if type == "string" then . else tojson end):
        ($x | if has("value") then .value elif has("v") then .v else .Value end) });

def tostream: path(def r: (.[]?|r), .; r) as $p | getpath($p) | reduce path(.[]?) as $q ([$p, .]; [$p+$q]);
def truncate_stream(stream): . as $n | null | stream | . as $input
  | if (.[0]|length) > $n then setpath([0];.[0][$n:]) else empty end;
def fromstream(f): { x: null, e: false } as $init
  | foreach f as $i ($init;
      if .e then $init else . end
      | if $i | length == 2
        then setpath(["e"]; $i[0] | length == 0) | setpath(["x"] + $i[0]; $i[1])
        else setpath(["e"]; $i[0] | length == 1) end;
      if .e then .x else empty end);

def implode:
  if type != "array" then error("implode input must be an array")
  else map(
      if type != "number" or isnan then
        error("\(type) (\(tojson)) can't be imploded, unicode codepoint needs to be numeric")
      elif . < 0 or . > 1114111 or (. >= 55296 and . <= 57343) then 65533
      else floor end)
    | _jaq_implode end;
def ascii: [.] | implode;
def builtins: [
  "IN/1", "IN/2", "INDEX/1", "INDEX/2", "JOIN/2", "JOIN/3", "JOIN/4", "abs/0", "add/0", "add/1",
  "all/0", "all/1", "all/2", "any/0", "any/1", "any/2", "arrays/0", "ascii/0", "ascii_downcase/0",
  "ascii_upcase/0", "booleans/0", "bsearch/1", "builtins/0", "capture/1", "capture/2",
  "combinations/0", "combinations/1", "contains/1", "debug/0", "debug/1", "del/1", "delpaths/1",
  "empty/0", "endswith/1", "env/0", "error/0", "error/1", "explode/0", "first/0", "first/1",
  "flatten/0", "flatten/1", "floor/0", "from_entries/0", "fromdate/0", "fromjson/0",
  "fromstream/1", "getpath/1", "gmtime/0", "group_by/1", "gsub/2", "gsub/3", "halt/0",
  "halt_error/0", "halt_error/1", "has/1", "implode/0", "in/1", "index/1", "indices/1",
  "infinite/0", "input/0", "input_filename/0", "inputs/0", "inside/1", "isempty/1",
  "isinfinite/0", "isnan/0", "isnormal/0", "isvalid/1", "iterables/0", "join/1", "keys/0",
  "keys_unsorted/0", "last/0", "last/1", "leaf_paths/0", "length/0", "limit/2", "ltrimstr/1",
  "map/1", "map_values/1", "match/1", "match/2", "max/0", "max_by/1", "min/0", "min_by/1",
  "mktime/0", "nan/0", "not/0", "now/0", "nth/1", "nth/2", "nulls/0", "numbers/0", "objects/0",
  "path/1", "paths/0", "paths/1", "pick/1", "range/1", "range/2", "range/3", "recurse/0",
  "recurse/1", "recurse/2", "repeat/1", "reverse/0", "rindex/1", "rtrimstr/1",
  "scalars/0", "scan/1", "scan/2", "select/1", "setpath/2", "sort/0", "sort_by/1", "split/1",
  "split/2", "splits/1", "splits/2", "sqrt/0", "startswith/1", "stderr/0", "strftime/1",
  "strings/0", "strptime/1", "sub/2", "sub/3", "test/1", "test/2", "to_entries/0", "toarray/0",
  "todate/0", "tojson/0", "tonumber/0", "tostream/0", "tostring/0", "transpose/0", "trim/0",
  "ltrim/0", "rtrim/0", "truncate_stream/1", "type/0", "unique/0", "unique_by/1", "until/2",
  "utf8bytelength/0", "values/0", "walk/1", "while/2", "with_entries/1", "getpath/1",
  "splits/1", "significand/0", "trimstr/1", "toboolean/0", "have_decnum/0", "have_literal_numbers/0"
];
def pick(pathexps): . as $top
  | reduce path(pathexps) as $p (null; setpath($p; $top | getpath($p)));
def getpath($p):
  if $p | type != "array" then error("Path must be specified as an array")
  elif $p | length > 10000 then error("Path too deep")
  else reduce $p[] as $k (.; .[$k]) end;
def setpath($p; $x):
  if $p | type != "array" then error("Path must be specified as an array")
  elif $p | length > 10000 then error("Path too deep")
  else getpath($p) = $x end;
def toarray: if type == "array" then . else [.] end;
def leaf_paths: paths(scalars);
def isvalid(f): try (f | true) catch false;

def delpaths($paths): jq_delpaths($paths);
def del(f): delpaths([path(f)]);
def to_entries: [keys_unsorted[] as $k | {key: $k, value: .[$k]}];
def with_entries(f): to_entries | map(f) | from_entries;

# jq's broken-down time: up to 8 numbers, missing ones 0.
def _jq_tm($f):
  if type == "number" then gmtime
  elif type != "array" then error("\($f) requires parsed datetime inputs")
  else . end;
def _jq_tm_fields($f): jq_tm($f);
def strftime($fmt): _jq_tm("strftime/1")
  | if ($fmt | type) != "string" then error("strftime/1 requires a string format") end
  | _jq_tm_fields("strftime/1") | _jaq_strftime($fmt);
def strflocaltime($fmt): _jq_tm("strflocaltime/1")
  | if ($fmt | type) != "string" then error("strflocaltime/1 requires a string format") end
  | _jq_tm_fields("strflocaltime/1") | _jaq_strflocaltime($fmt);
def mktime:
  if type != "array" then error("mktime requires array inputs")
  else _jq_tm_fields("mktime") | _jaq_mktime end;
