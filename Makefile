# Installs ddsp-piano like any Linux instrument, into the FHS places under PREFIX (staged under
# DESTDIR for packaging):
#   make install PREFIX=/usr/local          (or: make install DESTDIR=/tmp/stage PREFIX=/usr)
# The binaries are built here with the Swift runtime linked in (--static-swift-stdlib), so the
# installed programs need no Swift toolchain: only the Debian libraries the README lists.
# The installed programs find their weights in PREFIX/share/ddsp-piano/weights (beside their
# bin/ folder, so any PREFIX works), the presets are in PREFIX/share/ddsp-piano/presets.

PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
# A build folder of its own: the static runtime cannot share products with `swift build`'s.
SCRATCH ?= .build-install
PRODUCTS := ddsp-piano ddsp-pianod ddsp-piano-train
# The release, from its one place in the sources.
VERSION := $(shell sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/PianoIO/Version.swift)
ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
# Where `make deb` leaves the package (its path is the last line it prints).
DEBDIR ?= .

BIN := $(SCRATCH)/release
GEN := $(SCRATCH)/generated
ROOT := $(DESTDIR)$(PREFIX)
SHARE := $(ROOT)/share

# The LV2 instrument's bundle: its Turtle and the shared object (the Swift runtime linked in).
LV2_BUNDLE := $(GEN)/ddsp-piano.lv2
LV2_USER_DIR ?= $(HOME)/.lv2

.PHONY: all binaries lv2 man completions install install-files install-lv2-user uninstall deb clean-install

all: binaries man completions lv2

binaries:
	@for p in $(PRODUCTS); do \
	  $(SWIFT) build -c release --static-swift-stdlib --scratch-path $(SCRATCH) --product $$p || exit 1; \
	done

lv2:
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(SCRATCH) --product ddsp-piano-lv2
	rm -rf $(LV2_BUNDLE) && mkdir -p $(LV2_BUNDLE)
	install -m 0644 Sources/DDSPPianoLV2/ddsp-piano.lv2/manifest.ttl Sources/DDSPPianoLV2/ddsp-piano.lv2/ddsp-piano.ttl $(LV2_BUNDLE)/
	install -m 0755 $(BIN)/libddsp-piano-lv2.so $(LV2_BUNDLE)/ddsp-piano.so

# The plugin for this user only (~/.lv2, where every LV2 host looks), with the bundled weights
# inside the bundle (the plugin looks there first after the installed ones).
install-lv2-user: lv2
	rm -rf $(LV2_USER_DIR)/ddsp-piano.lv2
	install -d $(LV2_USER_DIR)/ddsp-piano.lv2/weights
	install -m 0644 $(LV2_BUNDLE)/*.ttl $(LV2_USER_DIR)/ddsp-piano.lv2/
	install -m 0755 $(LV2_BUNDLE)/ddsp-piano.so $(LV2_USER_DIR)/ddsp-piano.lv2/
	install -m 0644 weights/*.safetensors weights/README.md $(LV2_USER_DIR)/ddsp-piano.lv2/weights/
	@echo $(LV2_USER_DIR)/ddsp-piano.lv2

# Man pages from the commands' own help: swift-argument-parser's generate-manual tool (what its
# plugin runs), built here and run on the programs just built (the plugin would build the whole
# package a second time, its own way, in a folder of its own).
man: binaries
	@mkdir -p $(GEN)/man
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(SCRATCH) --product generate-manual
	@for p in $(PRODUCTS); do \
	  $(BIN)/generate-manual $(BIN)/$$p --output-directory $(GEN)/man || exit 1; \
	done

completions: binaries
	@mkdir -p $(GEN)/bash $(GEN)/zsh $(GEN)/fish
	@for p in $(PRODUCTS); do \
	  $(BIN)/$$p --generate-completion-script bash > $(GEN)/bash/$$p && \
	  $(BIN)/$$p --generate-completion-script zsh > $(GEN)/zsh/_$$p && \
	  $(BIN)/$$p --generate-completion-script fish > $(GEN)/fish/$$p.fish || exit 1; \
	done

install: all install-files

# The files only (what `install` and `deb` share); the build products must exist.
install-files:
	install -d $(ROOT)/bin $(SHARE)/ddsp-piano/weights $(SHARE)/ddsp-piano/presets \
	  $(SHARE)/man/man1 $(SHARE)/bash-completion/completions $(SHARE)/zsh/vendor-completions \
	  $(SHARE)/fish/vendor_completions.d $(ROOT)/lib/systemd/user $(SHARE)/doc/ddsp-piano/examples \
	  $(ROOT)/lib/lv2/ddsp-piano.lv2
	install -m 0755 $(addprefix $(BIN)/,$(PRODUCTS)) $(ROOT)/bin/
	install -m 0644 $(LV2_BUNDLE)/*.ttl $(ROOT)/lib/lv2/ddsp-piano.lv2/
	install -m 0644 $(LV2_BUNDLE)/ddsp-piano.so $(ROOT)/lib/lv2/ddsp-piano.lv2/
	install -m 0644 weights/*.safetensors weights/README.md $(SHARE)/ddsp-piano/weights/
	install -m 0644 presets/*.toml $(SHARE)/ddsp-piano/presets/
	install -m 0644 $(GEN)/man/*.1 $(SHARE)/man/man1/
	@# Completion files are sourced, not run: no #! line.
	for f in $(GEN)/bash/*; do sed '1{/^#!/d}' $$f > $(SHARE)/bash-completion/completions/$$(basename $$f) || exit 1; done
	chmod 0644 $(addprefix $(SHARE)/bash-completion/completions/,$(PRODUCTS))
	install -m 0644 $(GEN)/zsh/* $(SHARE)/zsh/vendor-completions/
	install -m 0644 $(GEN)/fish/* $(SHARE)/fish/vendor_completions.d/
	sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(PREFIX)/bin/|' systemd/ddsp-pianod.service \
	  > $(ROOT)/lib/systemd/user/ddsp-pianod.service
	chmod 0644 $(ROOT)/lib/systemd/user/ddsp-pianod.service
	install -m 0644 README.md NOTICE LICENSE ARCHITECTURE.md $(SHARE)/doc/ddsp-piano/
	install -m 0644 examples/*.mid $(SHARE)/doc/ddsp-piano/examples/

uninstall:
	rm -f $(addprefix $(ROOT)/bin/,$(PRODUCTS)) $(ROOT)/lib/systemd/user/ddsp-pianod.service
	rm -f $(addprefix $(SHARE)/man/man1/,$(addsuffix .1,$(PRODUCTS)))
	rm -f $(addprefix $(SHARE)/bash-completion/completions/,$(PRODUCTS))
	rm -f $(addprefix $(SHARE)/zsh/vendor-completions/_,$(PRODUCTS))
	rm -f $(addprefix $(SHARE)/fish/vendor_completions.d/,$(addsuffix .fish,$(PRODUCTS)))
	rm -rf $(SHARE)/ddsp-piano $(SHARE)/doc/ddsp-piano $(ROOT)/lib/lv2/ddsp-piano.lv2

clean-install:
	rm -rf $(SCRATCH)

# A Debian package of the same files (PREFIX=/usr, the user unit in /usr/lib/systemd/user/):
# stripped programs, compressed man pages, a copyright file, dependencies from dpkg-shlibdeps
# (from the libraries the programs link, so they match what was built against), then lintian
# (when installed) must report no errors. Needs dpkg-dev (and lintian for the check).
DEBSTAGE := $(SCRATCH)/deb
DEBROOT := $(DEBSTAGE)/debian/ddsp-piano
DEBNAME := ddsp-piano_$(VERSION)_$(ARCH).deb

deb: all
	@test -n "$(VERSION)" || { echo "make deb: no version in Sources/PianoIO/Version.swift" >&2; exit 1; }
	@command -v dpkg-shlibdeps >/dev/null || { echo "make deb: dpkg-shlibdeps not found (apt install dpkg-dev)" >&2; exit 1; }
	rm -rf $(DEBSTAGE)
	$(MAKE) --no-print-directory install-files DESTDIR=$(abspath $(DEBROOT)) PREFIX=/usr
	strip --strip-unneeded --remove-section=.comment --remove-section=.note $(addprefix $(DEBROOT)/usr/bin/,$(PRODUCTS)) \
	  $(DEBROOT)/usr/lib/lv2/ddsp-piano.lv2/ddsp-piano.so
	gzip -9n $(DEBROOT)/usr/share/man/man1/*.1
	rm -f $(DEBROOT)/usr/share/doc/ddsp-piano/LICENSE
	install -m 0644 packaging/copyright $(DEBROOT)/usr/share/doc/ddsp-piano/copyright
	sed 's/@VERSION@/$(VERSION)/' packaging/changelog | gzip -9n > $(DEBROOT)/usr/share/doc/ddsp-piano/changelog.gz
	chmod 0644 $(DEBROOT)/usr/share/doc/ddsp-piano/changelog.gz
	mkdir -p $(DEBROOT)/DEBIAN
	cp packaging/control $(DEBSTAGE)/debian/control
	cd $(DEBSTAGE) && dpkg-shlibdeps -O -e $(addprefix debian/ddsp-piano/usr/bin/,$(PRODUCTS)) \
	  -e debian/ddsp-piano/usr/lib/lv2/ddsp-piano.lv2/ddsp-piano.so > shlibs.vars
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' \
	  -e "s/@DEPENDS@/$$(sed -n 's/^shlibs:Depends=//p' $(DEBSTAGE)/shlibs.vars)/" \
	  -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEBROOT) | cut -f1)/" \
	  packaging/DEBIAN-control > $(DEBROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEBROOT) $(DEBDIR)/$(DEBNAME)
	@if command -v lintian >/dev/null; then \
	  lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides $(DEBDIR)/$(DEBNAME) >&2 || exit 1; \
	else echo "make deb: lintian not installed, not checked" >&2; fi
	@echo $(abspath $(DEBDIR)/$(DEBNAME))
