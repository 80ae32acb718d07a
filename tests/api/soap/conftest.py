"""Fixtures of the SOAP tests: a zeep client of the served WSDL, and both generations."""

from __future__ import annotations

from typing import Any

import pytest
import zeep

from tests.api.soap.helpers import GENERATIONS
from tests.support import Server


@pytest.fixture(scope="module")
def soap(server: Server) -> Any:
    return zeep.Client(f"{server.base_url}/soap?wsdl").service


@pytest.fixture(params=GENERATIONS)
def generation(request: pytest.FixtureRequest) -> str:
    return str(request.param)
