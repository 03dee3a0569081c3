-- Schema version 4 exactly as create_store made it before migrations existed (n1v1 at
-- commit fb0bf71, the last release without Alembic): every statement it ran on an empty
-- sqlite database, captured from the driver and kept verbatim. The baseline of the
-- migrations (tests/test_store_migrations.py builds a version-4 store from this file).
CREATE TABLE schema_version (
	version INTEGER NOT NULL
);
CREATE TABLE orders (
	client_order_id VARCHAR(64) NOT NULL,
	symbol VARCHAR(64) NOT NULL,
	side VARCHAR(8) NOT NULL,
	qty DOUBLE NOT NULL,
	order_type VARCHAR(16) NOT NULL,
	price DOUBLE,
	purpose VARCHAR(32) NOT NULL,
	status VARCHAR(32) NOT NULL,
	filled_qty DOUBLE NOT NULL,
	avg_fill_price DOUBLE NOT NULL,
	reason TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT,
	strategy TEXT NOT NULL,
	oco_group VARCHAR(128) NOT NULL,
	PRIMARY KEY (client_order_id)
);
CREATE TABLE signals (
	id INTEGER NOT NULL,
	timestamp BIGINT NOT NULL,
	symbol VARCHAR(64) NOT NULL,
	strategy VARCHAR(128) NOT NULL,
	target INTEGER NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE risk_decisions (
	id INTEGER NOT NULL,
	timestamp BIGINT NOT NULL,
	symbol VARCHAR(64) NOT NULL,
	rule VARCHAR(64) NOT NULL,
	action VARCHAR(16) NOT NULL,
	reason TEXT NOT NULL,
	requested_qty DOUBLE NOT NULL,
	approved_qty DOUBLE NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE equity (
	id INTEGER NOT NULL,
	timestamp BIGINT NOT NULL,
	cash DOUBLE NOT NULL,
	position_value DOUBLE NOT NULL,
	equity DOUBLE NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_equity_timestamp ON equity (timestamp);
CREATE TABLE audit_log (
	id INTEGER NOT NULL,
	time BIGINT NOT NULL,
	actor VARCHAR(128) NOT NULL,
	action VARCHAR(128) NOT NULL,
	details JSON NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE lease (
	resource VARCHAR(128) NOT NULL,
	holder VARCHAR(256) NOT NULL,
	token BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (resource)
);
CREATE TABLE engine_state (
	"key" VARCHAR(256) NOT NULL,
	value JSON NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY ("key")
);
CREATE TABLE bars (
	id INTEGER NOT NULL,
	step INTEGER NOT NULL,
	symbol VARCHAR(64) NOT NULL,
	timestamp BIGINT NOT NULL,
	open DOUBLE NOT NULL,
	high DOUBLE NOT NULL,
	low DOUBLE NOT NULL,
	close DOUBLE NOT NULL,
	volume DOUBLE NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_bars_symbol_time UNIQUE (symbol, timestamp)
);
CREATE INDEX ix_bars_step ON bars (step);
CREATE TABLE commands (
	id INTEGER NOT NULL,
	step INTEGER NOT NULL,
	kind VARCHAR(32) NOT NULL,
	payload JSON NOT NULL,
	actor VARCHAR(128) NOT NULL,
	at BIGINT NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE positions (
	symbol VARCHAR(64) NOT NULL,
	qty DOUBLE NOT NULL,
	avg_entry DOUBLE NOT NULL,
	last_price DOUBLE NOT NULL,
	market_value DOUBLE NOT NULL,
	unrealized_pnl DOUBLE NOT NULL,
	realized_pnl DOUBLE NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (symbol)
);
CREATE TABLE backtests (
	id VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	request JSON NOT NULL,
	result JSON,
	error TEXT,
	actor VARCHAR(128) NOT NULL,
	created_at BIGINT NOT NULL,
	finished_at BIGINT,
	PRIMARY KEY (id)
);
CREATE TABLE retrain_runs (
	model VARCHAR(64) NOT NULL,
	scheduled_at BIGINT NOT NULL,
	schedule VARCHAR(256) NOT NULL,
	state VARCHAR(16) NOT NULL,
	holder VARCHAR(256) NOT NULL,
	lease_token BIGINT NOT NULL,
	attempt INTEGER NOT NULL,
	run_name VARCHAR(128) NOT NULL,
	started_at BIGINT NOT NULL,
	finished_at BIGINT,
	version VARCHAR(16),
	promoted BOOLEAN,
	outcome TEXT NOT NULL,
	CONSTRAINT pk_retrain_runs PRIMARY KEY (model, scheduled_at)
);
CREATE TABLE order_events (
	id INTEGER NOT NULL,
	client_order_id VARCHAR(64) NOT NULL,
	status VARCHAR(32) NOT NULL,
	filled_qty DOUBLE NOT NULL,
	avg_fill_price DOUBLE NOT NULL,
	price DOUBLE,
	reason TEXT NOT NULL,
	at BIGINT NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(client_order_id) REFERENCES orders (client_order_id)
);
CREATE INDEX ix_order_events_order ON order_events (client_order_id);
CREATE TABLE fills (
	id INTEGER NOT NULL,
	client_order_id VARCHAR(64) NOT NULL,
	seq INTEGER NOT NULL,
	symbol VARCHAR(64) NOT NULL,
	side VARCHAR(8) NOT NULL,
	qty DOUBLE NOT NULL,
	price DOUBLE NOT NULL,
	fee DOUBLE NOT NULL,
	liquidity VARCHAR(8) NOT NULL,
	timestamp BIGINT NOT NULL,
	purpose VARCHAR(32) NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_fills_order_seq UNIQUE (client_order_id, seq),
	FOREIGN KEY(client_order_id) REFERENCES orders (client_order_id)
);
INSERT INTO schema_version (version) VALUES (4);
