"""Domain errors: what a service raises when a request cannot be done as asked. The message
says why in words a user understands; ``field`` names the input to fix. The API's one exception
handler (``cdphub.api.exception_handler``) turns every domain error, and Django's
``ValidationError``, into a 400 in the ``{code, message, errors}`` shape, so views do not catch
them one by one."""

from __future__ import annotations


class DomainError(ValueError):
    field = "non_field_errors"

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field

    def errors(self) -> dict[str, list[str]]:
        return {self.field: [self.message]}
