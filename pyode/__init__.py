"""pyode: a from-scratch Neural ODE engine."""
