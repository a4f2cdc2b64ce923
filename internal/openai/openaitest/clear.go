package openaitest

// ClearFaults drops every queued fault, as when OpenAI recovers.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}
