package server

import "context"

// sealHistories seals the broker's topic histories once every session
// has ended (Shutdown), so that a restart keeps their epochs
// (broker.Broker.SealHistories). The journal is closed after Shutdown
// returns, by whoever opened it. A shutdown past its deadline seals
// nothing: the histories then restart with new epochs, which is safe.
func (s *Server) sealHistories(ctx context.Context) {
	if err := s.broker.SealHistories(ctx); err != nil {
		s.cfg.Logger.Warn("topic histories not sealed: they restart with a new epoch", "err", err)
	}
}
