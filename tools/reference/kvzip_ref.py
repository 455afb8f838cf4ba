"""Pure-torch pieces of the KVzip teacher (SPEC §1) and of RoPE, no transformers needed."""
import math

import torch


def repeat_plan(ctx_ids, score_chunk, first_ids, next_ids, postfix_ids, prev_tokens):
    """Cut the context into scoring chunks; build each chunk's repeat input.

    chunk 0: first_ids ⧺ postfix ⧺ c_0;  chunk i>0: next_ids ⧺ c_{i-1}[-prev:] ⧺ postfix ⧺ c_i.
    Returns [(start, end, repeat_ids)] with start/end offsets into ctx_ids.
    """
    plan, n = [], len(ctx_ids)
    for start in range(0, n, score_chunk):
        end = min(start + score_chunk, n)
        chunk = list(ctx_ids[start:end])
        if start == 0:
            rep = list(first_ids) + list(postfix_ids) + chunk
        else:
            prev = list(ctx_ids[max(0, start - score_chunk):start])[-prev_tokens:]
            rep = list(next_ids) + prev + list(postfix_ids) + chunk
        plan.append((start, end, rep))
    return plan


def chunk_scores(q, k_prefix, k_chunk, k_rep):
    """KVzip score of one context chunk in one layer.

    q [Hq, R, d] repeat queries (post-norm, post-RoPE); k_prefix [H, P, d], k_chunk [H, C, d],
    k_rep [H, R, d] keys (post-RoPE). Query head j belongs to KV head j // G.
    softmax(q·kᵀ/√d) in fp32 over prefix ∪ chunk ∪ repeat, causal inside the repeat block;
    keep the chunk columns; max over the R queries and the G heads of a group -> [H, C].
    """
    Hq, R, d = q.shape
    H, P, C = k_prefix.shape[0], k_prefix.shape[1], k_chunk.shape[1]
    G = Hq // H
    keys = torch.cat([k_prefix, k_chunk, k_rep], dim=1).float()                 # [H, P+C+R, d]
    logits = torch.einsum("hgrd,hkd->hgrk", q.float().view(H, G, R, d), keys) / math.sqrt(d)
    future = torch.triu(torch.ones(R, R, dtype=torch.bool), diagonal=1)       # repeat r' > r
    mask = torch.zeros(R, P + C + R, dtype=torch.bool)
    mask[:, P + C:] = future
    probs = torch.softmax(logits.masked_fill(mask, float("-inf")), dim=-1)
    return probs[..., P:P + C].amax(dim=(1, 2))


def chunk_scores_naive(q, k_prefix, k_chunk, k_rep):
    """Same as chunk_scores with explicit loops and math.exp (float64), for self-tests."""
    Hq, R, d = q.shape
    H, C = k_prefix.shape[0], k_chunk.shape[1]
    G = Hq // H
    out = torch.zeros(H, C, dtype=torch.float64)
    for h in range(H):
        for g in range(G):
            for r in range(R):
                qv = q[h * G + g, r].double()
                keys = list(k_prefix[h]) + list(k_chunk[h]) + list(k_rep[h, :r + 1])
                logits = [float(qv @ k.double()) / math.sqrt(d) for k in keys]
                m = max(logits)
                z = sum(math.exp(x - m) for x in logits)
                P = k_prefix.shape[1]
                for j in range(C):
                    out[h, j] = max(out[h, j], math.exp(logits[P + j] - m) / z)
    return out


def causal_probs(q, k, scaling):
    """softmax(q·kᵀ·scaling) with a bottom-right causal mask. q [Hq, Q, d], k [H, K, d] -> [Hq, Q, K]."""
    Hq, Q, d = q.shape
    H, K = k.shape[0], k.shape[1]
    kk = k.repeat_interleave(Hq // H, dim=0)
    logits = torch.einsum("hqd,hkd->hqk", q.float(), kk.float()) * scaling
    qpos = torch.arange(K - Q, K).unsqueeze(1)
    mask = torch.arange(K).unsqueeze(0) > qpos
    return torch.softmax(logits.masked_fill(mask, float("-inf")), dim=-1)


# ---------------------------------------------------------------- RoPE inverse frequencies
def inv_freq_default(theta, head_dim):
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def inv_freq_linear(theta, head_dim, factor):
    return inv_freq_default(theta, head_dim) / factor


def inv_freq_llama3(theta, head_dim, factor, low_freq_factor, high_freq_factor, original_max):
    """Llama-3.1 smoothing: keep high frequencies, divide low ones by factor, blend in between."""
    inv = inv_freq_default(theta, head_dim)
    wavelen = 2 * math.pi / inv
    low_wavelen = original_max / low_freq_factor
    high_wavelen = original_max / high_freq_factor
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, out)


def rope_cos(inv_freq, positions):
    """cos table [T, head_dim] in the HF half-split layout (freqs repeated twice)."""
    freqs = positions.float().unsqueeze(1) * inv_freq.unsqueeze(0)
    return torch.cat([freqs, freqs], dim=-1).cos()


def inv_freq_yarn(theta, head_dim, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """YaRN (Peng et al.): dimensions that rotate more than beta_fast times over the original
    context keep their frequency, those under beta_slow are divided by factor, a linear ramp in
    between (correction dims floored/ceiled); cos/sin are scaled by 0.1·ln(factor) + 1.
    Returns (inv_freq, attention_factor)."""
    pos_freqs = theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)

    def correction_dim(rotations):
        return head_dim * math.log(original_max / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # weight of the original (extrapolated) frequency
    inv = interpolation * (1 - keep) + extrapolation * keep
    return inv, (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)
