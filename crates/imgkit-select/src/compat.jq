# jq 1.7 builtins that jaq lacks or spells differently. Loaded after jaq's definitions, so a
# definition here replaces jaq's of the same name and arity.

def halt_error($code): halt_error_empty, halt($code);
def halt_error: halt_error(5);

def have_decnum: false;
def have_literal_numbers: true;

def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def INDEX(stream; idx_expr): reduce stream as $row ({}; .[$row | idx_expr | tostring] |= $row);
def INDEX(idx_expr): INDEX(.[]; idx_expr);
def JOIN($idx; idx_expr): [.[] | [., $idx[idx_expr]]];
def JOIN($idx; stream; idx_expr): stream | [., $idx[idx_expr]];
def JOIN($idx; stream; idx_expr; join_expr): stream | [., $idx[idx_expr]] | join_expr;

def tostring: jq_tostring;
def join($x): reduce .[] as $i (null; (if . == null then "" else . + $x end) +
  ($i | if . == null then "" elif type == "string" then . else tojson end)) // "";

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
