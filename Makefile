# make test         venv with the latest PyPI releases: ruff, mypy, pytest
# make test-debian  the same pytest suite on Debian bookworm's own python3-* packages
# make deb          dist/scepd_<version>_all.deb, built offline and linted
# make test-deb     installs that .deb with apt, tests the installed scepd, purges it
# make test-systemd the .deb under a real systemd: a booted bookworm root (systemd-nspawn)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
TEST_DEBS := scep libsystemd-dev pkg-config strongswan-pki libstrongswan-extra-plugins
DEBIAN_PY_DEBS := python3-cryptography python3-asn1crypto python3-requests python3-apscheduler \
	python3-yaml python3-systemd python3-pytest python3-hypothesis
DEB_BUILD_DEBS := debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	lintian python3-pytest python3-cryptography python3-asn1crypto python3-requests \
	python3-apscheduler python3-yaml python3-systemd
PYTEST_ARGS ?=

.PHONY: test test-debian deb test-deb test-systemd lint deps venv bench demo man clean

deps:
	@scripts/apt-ensure $(TEST_DEBS)

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check scepd tests bench packaging/debian/tests
	$(VENV)/bin/mypy scepd

test: lint
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# No pip package may leak in: no user site, and the stack must be Debian's own.
test-debian:
	@scripts/apt-ensure $(TEST_DEBS) $(DEBIAN_PY_DEBS)
	PYTHONNOUSERSITE=1 /usr/bin/python3 -s scripts/check-debian-stack
	PYTHONNOUSERSITE=1 PYTHONPATH=$(CURDIR) /usr/bin/python3 -s -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

deb:
	@scripts/apt-ensure $(DEB_BUILD_DEBS)
	scripts/build-deb

INSTALLED_TEST_DEBS := scep openssl python3-pytest python3-cryptography systemd

test-deb: deb
	@scripts/apt-ensure $(INSTALLED_TEST_DEBS)
	scripts/test-deb

# Root only.  scripts/nspawn-root installs systemd-container and debootstrap and caches the
# root in $$SCEPD_NSPAWN_CACHE (default /var/cache/scepd-nspawn); the host side (devca, pytest)
# runs on Debian's python3.
test-systemd: deb
	@scripts/apt-ensure $(TEST_DEBS) $(DEBIAN_PY_DEBS)
	scripts/nspawn-root
	SCEPD_TEST_SYSTEMD=1 PYTHONNOUSERSITE=1 PYTHONPATH=$(CURDIR) /usr/bin/python3 -s -m pytest \
		-q -p no:cacheprovider $(PYTEST_ARGS) tests/systemd

bench: venv
	bench/enroll.sh

man: venv
	$(VPY) -m scepd.manpage man

demo: venv
	scripts/demo

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
