"""An integration that dies before it connects: a missing library, say."""

import sys

print("loading the model…", file=sys.stderr)
print("error: libmodel.so: cannot open shared object file", file=sys.stderr)
sys.exit(3)
