# redis-sidecar. `make run` and `make test` are the two commands a user
# needs; both install what is missing first (`make deps`).

CC      ?= cc
OPT     ?= -O2 -g -flto=auto
SANFLAGS ?=
override CFLAGS += $(OPT) $(SANFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror
override LDFLAGS += $(SANFLAGS)
LDLIBS  := -lev -lhiredis -linih -ldl -lm
PYTHON  := /usr/bin/python3

LIB_SRC   := lib/buf.c lib/cidr.c lib/httpreq.c lib/log.c lib/net.c lib/peer.c lib/resp.c \
             lib/tls.c lib/topk.c
POOL_SRC  := pool/req.c pool/link.c pool/pool.c
HEALTH_SRC := health/conn.c health/checker.c health/sentinel.c health/topology.c \
              health/cluster.c
PROXY_SRC := proxy/config.c proxy/command.c proxy/iptable.c proxy/client.c \
             proxy/request.c proxy/router.c proxy/lease.c proxy/upstream.c proxy/hold.c \
             proxy/session.c proxy/admin.c proxy/pause.c proxy/stats.c proxy/metrics.c \
             proxy/http.c proxy/nodes.c proxy/master.c proxy/reload.c proxy/listener.c \
             proxy/users.c proxy/clientcmd.c proxy/stream.c proxy/apps.c proxy/slowlog.c \
             proxy/cluster.c proxy/split.c proxy/main.c
SRC       := $(LIB_SRC) $(POOL_SRC) $(HEALTH_SRC) $(PROXY_SRC)

BUILD ?= build
OBJ   := $(SRC:%.c=$(BUILD)/%.o)
BIN   ?= redis-sidecar

UNIT_TESTS := test_resp test_config test_command test_cidr test_topology test_iptable \
              test_stats test_router test_httpreq test_peer test_topk test_tls test_slot
UNIT_BINS  := $(UNIT_TESTS:%=$(BUILD)/tests/%)

# libFuzzer targets (tests/fuzz/fuzz_<target>.c), built by clang-14 with
# ASan and UBSan into build-fuzz/; seeds in tests/fuzz/corpus/<target>/.
FUZZ_CC           ?= clang-14
FUZZ_TARGETS      ?= request reply config router httpreq
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 3
FUZZ_BINS          = $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DESTDIR    ?=

.PHONY: all deps run test unit integration asan fuzz fuzz-build bench soak clean install

all: $(BIN)

$(BIN): $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(OBJ:.o=.d)

# Unit tests link the module under test and the layers below it that it
# reads (test_router and test_stats: pools as structs, no socket).
$(BUILD)/tests/test_resp: tests/unit/test_resp.c $(BUILD)/lib/resp.o $(BUILD)/lib/buf.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^
$(BUILD)/tests/test_config: tests/unit/test_config.c $(BUILD)/proxy/config.o \
		$(BUILD)/lib/net.o $(BUILD)/lib/log.o $(BUILD)/lib/buf.o $(BUILD)/lib/cidr.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -linih
$(BUILD)/tests/test_cidr: tests/unit/test_cidr.c $(BUILD)/lib/cidr.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^
$(BUILD)/tests/test_peer: tests/unit/test_peer.c $(BUILD)/lib/peer.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^
# lib/tls.c on its own against TLS-only redis-servers.
$(BUILD)/tests/test_tls: tests/unit/test_tls.c $(BUILD)/lib/tls.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -ldl
# The hash slot only; health/cluster.o brings the map reader along.
$(BUILD)/tests/test_slot: tests/unit/test_slot.c $(BUILD)/health/cluster.o \
		$(BUILD)/health/conn.o $(BUILD)/lib/log.o $(BUILD)/lib/buf.o $(BUILD)/lib/net.o \
		$(BUILD)/lib/tls.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lhiredis -lev -ldl
$(BUILD)/tests/test_topk: tests/unit/test_topk.c $(BUILD)/lib/topk.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lm
$(BUILD)/tests/test_command: tests/unit/test_command.c $(BUILD)/proxy/command.o \
		$(BUILD)/health/checker.o $(BUILD)/health/conn.o $(BUILD)/lib/log.o \
		$(BUILD)/lib/buf.o $(BUILD)/lib/net.o $(BUILD)/lib/tls.o $(BUILD)/lib/resp.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lhiredis -lev -ldl

$(BUILD)/tests/test_stats: tests/unit/test_stats.c $(BUILD)/proxy/stats.o $(BUILD)/pool/pool.o \
		$(BUILD)/pool/link.o $(BUILD)/pool/req.o $(BUILD)/health/topology.o \
		$(BUILD)/health/checker.o $(BUILD)/health/conn.o $(BUILD)/lib/buf.o $(BUILD)/lib/net.o \
		$(BUILD)/lib/log.o $(BUILD)/lib/resp.o $(BUILD)/lib/cidr.o $(BUILD)/lib/tls.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lhiredis -lev -ldl -lm

$(BUILD)/tests/test_router: tests/unit/test_router.c $(BUILD)/proxy/router.o \
		$(BUILD)/proxy/command.o $(BUILD)/pool/pool.o $(BUILD)/pool/link.o $(BUILD)/pool/req.o \
		$(BUILD)/health/topology.o $(BUILD)/health/checker.o $(BUILD)/health/conn.o \
		$(BUILD)/lib/buf.o $(BUILD)/lib/net.o $(BUILD)/lib/log.o $(BUILD)/lib/resp.o \
		$(BUILD)/lib/cidr.o $(BUILD)/lib/tls.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lhiredis -lev -ldl -lm

$(BUILD)/tests/test_httpreq: tests/unit/test_httpreq.c $(BUILD)/lib/httpreq.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^
$(BUILD)/tests/test_topology: tests/unit/test_topology.c $(BUILD)/health/topology.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^
$(BUILD)/tests/test_iptable: tests/unit/test_iptable.c $(BUILD)/proxy/iptable.o $(BUILD)/lib/cidr.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^

# The fuzz targets: linked with libFuzzer's main (-fsanitize=fuzzer); the
# objects they test were compiled with -fsanitize=fuzzer-no-link by the
# fuzz-build sub-make (CFLAGS), which alone builds these.
FUZZ_LINK = $(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^)
$(BUILD)/fuzz_request: tests/fuzz/fuzz_request.c tests/fuzz/stream.c tests/fuzz/stream.h \
		tests/fuzz/fuzz.h $(BUILD)/lib/resp.o $(BUILD)/lib/buf.o
	$(FUZZ_LINK)
$(BUILD)/fuzz_reply: tests/fuzz/fuzz_reply.c tests/fuzz/stream.c tests/fuzz/stream.h \
		tests/fuzz/fuzz.h $(BUILD)/lib/resp.o $(BUILD)/lib/buf.o
	$(FUZZ_LINK)
$(BUILD)/fuzz_config: tests/fuzz/fuzz_config.c tests/fuzz/fuzz.h $(BUILD)/proxy/config.o \
		$(BUILD)/lib/net.o $(BUILD)/lib/log.o $(BUILD)/lib/buf.o $(BUILD)/lib/cidr.o
	$(FUZZ_LINK) -Wl,--wrap=getaddrinfo -linih
$(BUILD)/fuzz_router: tests/fuzz/fuzz_router.c tests/fuzz/fuzz.h $(BUILD)/proxy/router.o \
		$(BUILD)/proxy/command.o $(BUILD)/pool/pool.o $(BUILD)/pool/link.o $(BUILD)/pool/req.o \
		$(BUILD)/health/topology.o $(BUILD)/health/checker.o $(BUILD)/health/conn.o \
		$(BUILD)/lib/buf.o $(BUILD)/lib/net.o $(BUILD)/lib/log.o $(BUILD)/lib/resp.o \
		$(BUILD)/lib/cidr.o $(BUILD)/lib/tls.o
	$(FUZZ_LINK) -lhiredis -lev -ldl -lm
$(BUILD)/fuzz_httpreq: tests/fuzz/fuzz_httpreq.c tests/fuzz/fuzz.h $(BUILD)/lib/httpreq.o
	$(FUZZ_LINK)

deps:
	@./tests/deps.sh

run: deps all
	@TLS=$(TLS) CLUSTER=$(CLUSTER) ./tests/run-local.sh

unit: $(UNIT_BINS)
	@./tests/run-tests.sh unit $(UNIT_BINS)

integration: all
	@SIDECAR_BIN=$(abspath $(BIN)) ./tests/run-tests.sh integration

# Each fuzz target also runs FUZZ_TEST_SECONDS on its seeds, one test each.
test: deps all $(UNIT_BINS) fuzz-build
	@SIDECAR_BIN=$(abspath $(BIN)) FUZZ_DIR=build-fuzz FUZZ_TARGETS="$(FUZZ_TARGETS)" \
	    FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) FUZZ_WORK=build-fuzz/test FUZZ_FRESH=1 \
	    FUZZ_JOBS=$(words $(FUZZ_TARGETS)) ./tests/run-tests.sh all $(UNIT_BINS)

# ASan + UBSan build in its own directory; runs the whole suite on it.
asan: deps
	$(MAKE) BUILD=build-asan BIN=build-asan/redis-sidecar OPT="-O1 -g -fno-omit-frame-pointer" \
	    SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -DSIDECAR_CHECKS" \
	    build-asan/redis-sidecar $(UNIT_TESTS:%=build-asan/tests/%)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    SIDECAR_BIN=$(abspath build-asan/redis-sidecar) SIDECAR_ASAN=1 \
	    ./tests/run-tests.sh all $(UNIT_TESTS:%=build-asan/tests/%)

# FUZZ_SECONDS per target (FUZZ_TARGETS selects them) on a copy of its
# seeds in build-fuzz/corpus/, which keeps what the runs found; logs in
# build-fuzz/logs/, crash inputs in build-fuzz/crashes/<target>/.
fuzz: deps fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/fuzz/run.sh build-fuzz $(FUZZ_TARGETS)

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) \
	    OPT="-g -O1 -fno-omit-frame-pointer" \
	    SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	    $(FUZZ_BINS)

bench: deps all $(BUILD)/bench/loadgen
	@LOADGEN_BIN=$(BUILD)/bench/loadgen ./bench/run.sh

# The open-loop load generator of the latency section (bench/loadgen.c).
$(BUILD)/bench/loadgen: bench/loadgen.c $(BUILD)/lib/resp.o $(BUILD)/lib/buf.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lev -lm

# The chaos soak (tests/soak/soak.py): SOAK_MINUTES of faults under load
# (10 by default), in the order drawn from SOAK_SEED (random unless set;
# printed). Report in build/soak-report.txt. Not part of `make test`.
SOAK_MINUTES ?= 10
SOAK_SEED ?=
soak: deps all
	@SIDECAR_BIN=$(abspath $(BIN)) SOAK_MINUTES=$(SOAK_MINUTES) SOAK_SEED=$(SOAK_SEED) \
	    $(PYTHON) tests/soak/soak.py --report build/soak-report.txt

# The binary, the systemd unit (paths filled in), the annotated proxy.ini
# (kept if one is there already) and the man page; honours PREFIX and
# DESTDIR. tests/integration/test_install.py checks the list.
install: all
	install -D -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/redis-sidecar
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    dist/redis-sidecar.service.in >$(DESTDIR)$(PREFIX)/lib/systemd/system/redis-sidecar.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/redis-sidecar.service
	test -e $(DESTDIR)$(SYSCONFDIR)/redis-sidecar/proxy.ini || \
	    install -D -m 644 proxy.ini $(DESTDIR)$(SYSCONFDIR)/redis-sidecar/proxy.ini
	install -D -m 644 dist/redis-sidecar.1 $(DESTDIR)$(PREFIX)/share/man/man1/redis-sidecar.1

clean:
	rm -rf build build-asan build-fuzz $(BIN)
