"""wsgiref.validate.validator, with one app-side check relaxed for real frameworks.

The standard library's validator checks both sides of PEP 3333. Every server-side check
is kept. One app-side check is relaxed: PEP 3333 lets an app call `wsgi.input.read()`
only with a size, but werkzeug (Flask) calls `read()` without one for chunked uploads
(when the server sets `wsgi.input_terminated`) and for url-encoded forms, and every
server supports it; the wrapper still asserts that what the server returns is bytes.
"""

import wsgiref.validate as _validate
from wsgiref.validate import WSGIWarning, validator  # noqa: F401 (re-exported)


class InputWrapper(_validate.InputWrapper):
    def read(self, *args):
        _validate.assert_(len(args) <= 1)
        v = self.input.read(*args)
        _validate.assert_(type(v) is bytes)
        return v


# lint_app looks InputWrapper up in its module's globals on every request.
_validate.InputWrapper = InputWrapper
