// Fault injection for tests: named points in the code where a test can make
// lorry pause, to hit a window on purpose (e.g. kill -9 in the middle of a
// copy). Configured by the environment, off (and nearly free) otherwise:
//   LORRY_FAULT_SLEEP=copy_range:300,other_point:50   (milliseconds)
#pragma once

#include <string_view>

namespace lorry {

// Sleeps as configured for `point`; does nothing when not configured.
void FaultPoint(std::string_view point);

}  // namespace lorry
