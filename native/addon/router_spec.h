// Reading the flat router spec that lib/config.ts builds from a MoEConfig (DESIGN §2) into
// moekit::RouterSpec. Shared by the layer and ops.route.
#pragma once

#include <napi.h>

#include "../layer/stage_types.h"

namespace moekit::addon {

// obj: { hidden, groups: [{count, modality}], router: {type, topK, score, normalize, scale,
//        limitGroups, limitTopGroups, useBias, biasUpdateRate, temperature, minAffinity,
//        loadPenalty, loadDecay, capacityFactor, policy, balanceCoeff, scope, zCoeff, orthCoeff,
//        orthMode, seed, balanceMicroFraction?} } — enums as their integer codes in declaration
//        order; balanceMicroFraction may be left out (0).
RouterSpec readRouterSpec(const Napi::Object& obj);

// Small typed readers of object fields; errors name `where.key`.
double readField(const Napi::Object& obj, const char* key, const std::string& where);
int readIntField(const Napi::Object& obj, const char* key, int lo, int hi, const std::string& where);

}  // namespace moekit::addon
