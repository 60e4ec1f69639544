"""Token-rate stubs that speak the gateway's production protocols, with no model behind them."""
