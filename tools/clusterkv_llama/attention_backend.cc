#include "tools/clusterkv_llama/attention_backend.h"

namespace clusterkv::llama {

void AttentionStepStats::Add(const AttentionStepStats& o) {
  total_us += o.total_us;
  append_us += o.append_us;
  score_us += o.score_us;
  select_us += o.select_us;
  fetch_us += o.fetch_us;
  attend_us += o.attend_us;
  bytes_fetched += o.bytes_fetched;
  hit_tokens += o.hit_tokens;
  miss_tokens += o.miss_tokens;
  attended_tokens += o.attended_tokens;
  selected_tokens += o.selected_tokens;
  selected_heads += o.selected_heads;
  estimated_recall_sum += o.estimated_recall_sum;
  prefetched_tokens += o.prefetched_tokens;
  prefetch_used_tokens += o.prefetch_used_tokens;
  prefetch_wait_us += o.prefetch_wait_us;
  excluded_us += o.excluded_us;
}

}  // namespace clusterkv::llama
